"""
What the visit flow asks of the telephone system, and what it gets back.

The flow depends on :class:`IDialer` only; :class:`~gatekeeper.dialer.AMIDialer`
provides it over Asterisk's manager interface, and tests can provide it with a
fake.  Call UUIDs here are always the canonical form of
:mod:`gatekeeper.session.uuids`.
"""

from __future__ import annotations

from enum import Enum

from attrs import frozen
from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

__all__ = [
    "DialerUnavailable",
    "IDialer",
    "OriginateResult",
    "Outcome",
    "VisitorChannel",
]


class DialerUnavailable(Exception):
    """AMI is down: residents cannot be rung until it comes back."""


class Outcome(Enum):
    """How ringing one resident ended."""

    ANSWERED = "answered"  # Reason 4
    NO_ANSWER = "no_answer"  # Reason 3: rang until Timeout
    BUSY = "busy"  # Reason 5
    CONGESTION = "congestion"  # Reason 8
    UNREACHABLE = "unreachable"  # Reason 0: channel could not be created or called
    HUNG_UP = "hung_up"  # Reason 1
    FAILED = "failed"  # Asterisk refused the Originate, or a Reason we do not map
    LOST = "lost"  # AMI went away (or stayed silent) before the outcome


@frozen
class OriginateResult:
    """What became of one attempt to ring a resident."""

    call_uuid: str
    extension: str
    channel_id: str
    """The ChannelId we preset: the resident channel's Uniqueid."""
    outcome: Outcome
    reason: int | None = None
    channel: str = ""
    """The channel's real name when answered; the dial string otherwise."""
    uniqueid: str | None = None
    """As ``OriginateResponse`` said; ``None`` for ``<unknown>``."""
    message: str = ""
    """Why, in words, for ``FAILED`` and ``LOST``."""

    @property
    def answered(self) -> bool:
        return self.outcome is Outcome.ANSWERED


@frozen
class VisitorChannel:
    """A ``GatekeeperVisit`` announcement: which channel and gate a call is."""

    call_uuid: str
    channel: str
    gate: str | None
    uniqueid: str | None


class IDialer(Interface):
    """What the visit flow needs from the telephone system."""

    connected = Attribute("True while the dialer can ring residents.")

    def call_resident(
        call_uuid: str, extension: str, ring_timeout: float
    ) -> Deferred[OriginateResult]:
        """
        Ring ``extension`` for at most ``ring_timeout`` seconds; when it
        answers, its leg connects back by AudioSocket under ``call_uuid``.

        Fires with an :class:`OriginateResult` for every outcome Asterisk can
        report; fails at once with :class:`DialerUnavailable` when AMI is
        down.  Cancelling it hangs the ringing channel up.
        """

    def hang_up_resident(call_uuid: str) -> Deferred[int]:
        """Hang up the resident channels rung for ``call_uuid``; fires with
        how many were still up."""

    def when_resident_gone(channel_id: str) -> Deferred[int | None]:
        """Fires when the resident channel ``channel_id`` hangs up, with its
        Q.850 cause if known (at once if no such channel is up)."""

    def when_visitor_gone(call_uuid: str) -> Deferred[bool]:
        """Fires True when Asterisk reports the visitor's channel hung up."""

    def hang_up(channel: str) -> Deferred[bool]:
        """Hang up any channel by name or id; False when it was gone."""

    def play_dtmf(channel: str, digits: str) -> Deferred[None]:
        """Play ``digits`` out of ``channel`` towards its far end (the gate
        intercom, for the visitor's channel)."""

    def set_done(channel: str) -> Deferred[bool]:
        """Set ``GK_DONE=1`` on ``channel`` so its dialplan does not retry
        ``AudioSocket()`` after we hang up on purpose; False if it was gone."""

    def visitor_channel(call_uuid: str) -> VisitorChannel | None:
        """The announced visitor channel and gate of ``call_uuid``, if any."""

    def when_visitor_announced(
        call_uuid: str, timeout: float | None = None
    ) -> Deferred[VisitorChannel | None]:
        """Fires with the announcement of ``call_uuid`` once it arrives, or
        with None after ``timeout`` seconds."""

    def forget(call_uuid: str) -> None:
        """The call is over: drop what the dialer remembers about it."""
