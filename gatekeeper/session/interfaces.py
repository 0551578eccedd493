"""
What the session registry tells whoever runs a visit.

The registry decides which connection belongs to which call and keeps the
pair alive across dropped legs; it knows nothing about greetings, apartments
or doors.  The visit flow (``gatekeeper.flow.Conversation``) learns what
happens to its pair through :class:`IPairListener`: one listener per pair,
made by the factory given to the registry when the pair starts (before its
first ``leg_attached``), and told of every event of that pair until
``pair_ended``.  The registry calls it synchronously, in the order events
happen; a listener that raises ends its pair as ``failed`` and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from zope.interface import Interface

from gatekeeper.audiosocket.wire import Kind

if TYPE_CHECKING:
    from gatekeeper.session.callpair import CallPair, Leg

__all__ = ["IPairListener", "PairListenerFactory"]


class IPairListener(Interface):
    """Hears the life of one :class:`~gatekeeper.session.callpair.CallPair`."""

    def leg_attached(leg: Leg) -> None:
        """
        A leg joined the pair for the first time.

        Called once for the visitor leg, right after the pair starts, and once
        for the resident leg when the expected resident's connection arrives.
        """

    def leg_dropped(leg: Leg) -> None:
        """
        A leg's connection was lost; its grace period is running.

        The pair keeps waiting: the leg may be re-attached (``leg_reattached``)
        or its grace may expire, which ends the pair as ``visitor_lost`` or
        ``resident_lost``.  Asterisk closes the socket both when a caller hangs
        up and when the network fails, so a flow that knows the call was done
        (the resident already decided) ends the pair itself here.
        """

    def leg_reattached(leg: Leg) -> None:
        """A dropped leg is back on a new connection: resume where it was."""

    def audio_received(leg: Leg, kind: Kind, payload: bytes) -> None:
        """An audio frame from ``leg`` (``leg.kind`` is already ``kind``)."""

    def dtmf_received(leg: Leg, digit: str) -> None:
        """A DTMF digit released on ``leg``."""

    def pair_ended(pair: CallPair) -> None:
        """
        The pair ended, with ``pair.outcome``; the last call this listener gets.

        Its live legs have been sent a hang-up frame already.
        """


PairListenerFactory = Callable[["CallPair"], IPairListener]
"""Called with each new pair; returns the listener for that pair."""
