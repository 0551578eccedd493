"""
One visit as gatekeeper holds it: one call UUID, one :class:`CallPair`.

Calls used to drop early or lose their context because each component kept
its own idea of the call: a UUID reformatted here, a context copied there.
Here the UUID, in its one canonical form, names exactly one pair, and the
pair owns everything the visit knows (:class:`VisitContext`).  Legs do not
carry context, so there is nothing to hand over when the resident's leg
joins: it sees what the visitor's leg left, and the registry checks that
context (:meth:`VisitContext.check`) at each such boundary.

A :class:`Leg` is one role in the pair (visitor or resident) and the
:class:`~gatekeeper.audiosocket.interfaces.ICallReceiver` of whichever
connection currently plays that role.  When the connection drops the
``Leg`` object stays, ``dropped``; a connection that comes back within the
grace period takes its place, so the flow's references to ``pair.visitor``
and ``pair.resident`` stay valid across a reconnection.

A pair ends exactly once, with exactly one :class:`Outcome`.  The
:class:`~gatekeeper.session.registry.SessionRegistry` makes every state
change; these classes hold state, validate it and forward frames.
"""

from __future__ import annotations

import enum
import math
import re
from typing import TYPE_CHECKING, Any

from attrs import define, field, frozen, setters, validate, validators
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gatekeeper.audiosocket.interfaces import IAudioSocketLeg, ICallReceiver
from gatekeeper.audiosocket.wire import AUDIO_KINDS, Kind
from gatekeeper.session.interfaces import IPairListener
from gatekeeper.session.uuids import InvalidCallUUID, is_canonical_uuid

if TYPE_CHECKING:
    from gatekeeper.session.registry import SessionRegistry

__all__ = [
    "AttemptResult",
    "CallPair",
    "ContextMismatchError",
    "Leg",
    "LegState",
    "Outcome",
    "PairState",
    "ResidentAttempt",
    "Role",
    "VisitContext",
]


class Role(enum.StrEnum):
    VISITOR = "visitor"
    RESIDENT = "resident"


class LegState(enum.StrEnum):
    """Where a leg's connection is; only ``live`` legs pass frames on."""

    LIVE = "live"
    # The connection was lost; the grace period runs and the role may come back.
    DROPPED = "dropped"
    # We sent a hang-up frame and wait for the connection to close.
    HANGING_UP = "hanging_up"
    CLOSED = "closed"


class PairState(enum.StrEnum):
    """How far the pair got; a dropped leg does not change it."""

    # The visitor's leg only; nobody called yet (or the call was withdrawn).
    VISITOR = "visitor"
    # ``expect_resident`` was called: the resident's leg may arrive.
    CALLING = "calling"
    # The resident's leg joined.
    CONNECTED = "connected"
    ENDED = "ended"


class Outcome(enum.StrEnum):
    """How a visit ended: exactly one per pair, for the log and the metrics."""

    ALLOWED = "allowed"
    DENIED = "denied"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    # The visitor hung up (the flow tells it from a lost connection).
    VISITOR_LEFT = "visitor_left"
    # A leg dropped and did not come back within the grace period.
    VISITOR_LOST = "visitor_lost"
    RESIDENT_LOST = "resident_lost"
    # The resident's leg did not arrive by the deadline of ``expect_resident``,
    # or the dialer could not ring anyone (AMI down).
    RESIDENT_UNREACHABLE = "resident_unreachable"
    # The visitor never gave an apartment the directory knows.
    UNKNOWN_APARTMENT = "unknown_apartment"
    FAILED = "failed"
    SHUTDOWN = "shutdown"


class AttemptResult(enum.StrEnum):
    ANSWERED = "answered"
    UNREACHABLE = "unreachable"
    WITHDRAWN = "withdrawn"
    # The pair ended while the attempt was still waiting.
    ABANDONED = "abandoned"


class ContextMismatchError(ValueError):
    """A visit context that does not belong to the call it is handed to."""


def _canonical(_: object, attribute: Any, value: object) -> None:
    if not is_canonical_uuid(value):
        raise InvalidCallUUID(
            f"{attribute.name} must be a canonical (lowercase, dashed) call UUID, "
            f"not {value!r}"
        )


def _time(_: object, attribute: Any, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{attribute.name} must be a number, not {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be finite, not {value!r}")


def _optional_time(instance: object, attribute: Any, value: object) -> None:
    if value is not None:
        _time(instance, attribute, value)


# Names, channels and references end up in log lines, AMI actions and file
# names: printable, no whitespace or control characters, bounded.
_TOKEN = re.compile(r"[^\s\x00-\x1f\x7f]{1,128}")
# A file path or store key: as long as a path may be, still without blanks.
_REFERENCE = re.compile(r"[^\s\x00-\x1f\x7f]{1,1024}")
_APARTMENT = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,31}")
_PHASE = re.compile(r"[a-z][a-z0-9_]{0,31}")


def _token(pattern: re.Pattern[str]) -> Any:
    def check(_: object, attribute: Any, value: object) -> None:
        if value is None:
            return
        if not isinstance(value, str) or pattern.fullmatch(value) is None:
            raise ValueError(f"{attribute.name}: {value!r} is not acceptable")

    return check


@frozen
class ResidentAttempt:
    """One ``expect_resident``: whom the dialer called and what came of it."""

    number: int = field(validator=[validators.instance_of(int), validators.ge(1)])
    target: str | None = field(validator=_token(_TOKEN))
    expected_at: float = field(validator=_time)
    deadline_at: float = field(validator=_time)
    result: AttemptResult | None = field(
        default=None,
        validator=validators.optional(validators.instance_of(AttemptResult)),
    )
    resolved_at: float | None = field(default=None, validator=_optional_time)

    def __attrs_post_init__(self) -> None:
        if self.deadline_at < self.expected_at:
            raise ValueError("an attempt's deadline cannot precede its start")
        if (self.result is None) != (self.resolved_at is None):
            raise ValueError("an attempt has a result exactly when it is resolved")


def _phases(_: object, attribute: Any, value: object) -> None:
    if not isinstance(value, tuple):
        raise TypeError(f"{attribute.name} must be a tuple of (phase, time)")
    last = -math.inf
    for item in value:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise TypeError(f"{attribute.name}: {item!r} is not (phase, time)")
        name, at = item
        _token(_PHASE)(None, attribute, name)
        _time(None, attribute, at)
        if at < last:
            raise ValueError(f"{attribute.name}: phase {name!r} goes back in time")
        last = at


def _attempts(_: object, attribute: Any, value: object) -> None:
    if not isinstance(value, tuple):
        raise TypeError(f"{attribute.name} must be a tuple")
    for number, attempt in enumerate(value, 1):
        if not isinstance(attempt, ResidentAttempt) or attempt.number != number:
            raise ValueError(f"{attribute.name}: attempt {number} is {attempt!r}")


@define(eq=False)
class VisitContext:
    """
    Everything a visit knows, owned by its pair and checked on every change.

    ``define`` runs the validators on each assignment too, so a flow that
    writes a bad apartment or a foreign UUID fails where it writes it, not
    three components later.  Times are the registry clock's seconds.
    """

    call_uuid: str = field(validator=_canonical, on_setattr=setters.frozen)
    started_at: float = field(validator=_time)
    # From the gate's AMI ``UserEvent(GatekeeperVisit)``: which building, and
    # the visitor's channel (to ``Setvar`` on it before hanging up).
    gate: str | None = field(default=None, validator=_token(_TOKEN))
    visitor_channel: str | None = field(default=None, validator=_token(_TOKEN))
    apartment: str | None = field(default=None, validator=_token(_APARTMENT))
    # Where the visitor's recorded name is (a path or a store key).
    recording: str | None = field(default=None, validator=_token(_REFERENCE))
    # Tuples rather than lists: replaced whole, so every change is validated,
    # and an idle pair shares the one empty tuple.
    phases: tuple[tuple[str, float], ...] = field(default=(), validator=_phases)
    resident_attempts: tuple[ResidentAttempt, ...] = field(
        default=(), validator=_attempts
    )

    @property
    def phase(self) -> str:
        """The flow's current phase; ``new`` until it enters one."""
        return self.phases[-1][0] if self.phases else "new"

    def enter_phase(self, name: str, at: float) -> None:
        """Record that the flow entered phase ``name`` at time ``at``."""
        self.phases = (*self.phases, (name, at))

    def phase_started(self, name: str) -> float | None:
        """When the flow first entered ``name``, or None."""
        for phase, at in self.phases:
            if phase == name:
                return at
        return None

    @property
    def last_attempt(self) -> ResidentAttempt | None:
        return self.resident_attempts[-1] if self.resident_attempts else None

    def check(self, call_uuid: str) -> None:
        """
        Raise :class:`ContextMismatchError` unless whole and ``call_uuid``'s.

        Called where the context passes from one leg to the other, so a context
        that was damaged (or belongs to another call) stops the handover.
        """
        if self.call_uuid != call_uuid:
            raise ContextMismatchError(
                f"context of {self.call_uuid} handed to call {call_uuid}"
            )
        try:
            validate(self)
        except (TypeError, ValueError) as e:
            raise ContextMismatchError(f"context of {call_uuid} is damaged: {e}") from e


def _audio_kind(_: object, attribute: Any, value: object) -> None:
    if value not in AUDIO_KINDS:
        raise ValueError(f"{attribute.name} must be an audio kind, not {value!r}")


@implementer(ICallReceiver)
@define(eq=False)
class Leg:
    """
    One role of a pair, and the receiver of the connection playing it now.

    The audio kind is learned from the frames the connection sends (the
    channel driver may negotiate 16 kHz); until the first frame it is slin
    at 8 kHz, which is all ``AudioSocket()`` ever sends.
    """

    _log = Logger()

    role: Role = field(
        validator=validators.instance_of(Role), on_setattr=setters.frozen
    )
    connection: IAudioSocketLeg | None = field(repr=False)
    attached_at: float = field(validator=_time)
    state: LegState = field(default=LegState.LIVE)
    kind: Kind = field(default=Kind.SLIN, validator=_audio_kind)
    dropped_at: float | None = None
    # Connections that have played this role: 1, plus one per reattachment.
    attachments: int = 1
    pair: CallPair | None = field(default=None, repr=False)
    # The grace period running while the leg is dropped.
    _grace: IDelayedCall | None = field(default=None, init=False, repr=False)

    @property
    def call_uuid(self) -> str | None:
        return self.pair.call_uuid if self.pair is not None else None

    @property
    def sample_rate(self) -> int:
        return self.kind.sample_rate

    @property
    def live(self) -> bool:
        return self.state is LegState.LIVE

    def send_audio(self, payload: bytes) -> bool:
        """
        Send ``payload`` at this leg's own kind; False if it went nowhere.

        A dropped leg swallows audio: the flow keeps its pace and resumes
        where it is when the leg comes back.
        """
        connection = self.connection
        if self.state is not LegState.LIVE or connection is None:
            return False
        return connection.send_audio(self.kind, payload)

    def hang_up(self) -> None:
        """
        Hang this leg up on purpose: it will not be waited for nor re-attached.

        To end the visit, end the pair instead (``pair.end(outcome)``), which
        hangs up every leg; hanging up its last leg this way ends the pair as
        ``failed``.
        """
        pair = self.pair
        if pair is not None and pair._registry is not None:
            pair._registry._hang_up_leg(self)

    # -- ICallReceiver: the frames of the current connection ------------

    def audio_received(self, kind: Kind, payload: bytes) -> None:
        if self.state is not LegState.LIVE:
            return
        if kind is not self.kind:
            self._kind_changed(kind)
        pair = self.pair
        if pair is None:
            return
        try:
            pair.listener.audio_received(self, kind, payload)
        except Exception:
            pair._listener_failed("audio_received", self)

    def dtmf_received(self, digit: str) -> None:
        if self.state is not LegState.LIVE:
            return
        pair = self.pair
        if pair is None:
            return
        try:
            pair.listener.dtmf_received(self, digit)
        except Exception:
            pair._listener_failed("dtmf_received", self)

    def connection_lost(self, reason: Failure) -> None:
        pair = self.pair
        if pair is not None and pair._registry is not None:
            pair._registry._connection_lost(self, reason)

    def _kind_changed(self, kind: Kind) -> None:
        pair = self.pair
        self._log.info(
            "{leg} leg of {call_uuid} sends {kind} ({rate} Hz), was {old}",
            call_uuid=self.call_uuid,
            leg=self.role.value,
            state=pair.state.value if pair is not None else None,
            kind=kind.name,
            rate=kind.sample_rate,
            old=self.kind.name,
        )
        self.kind = kind


def _role(role: Role) -> Any:
    def check(_: object, attribute: Any, value: object) -> None:
        if value is None and role is Role.RESIDENT:
            return
        if not isinstance(value, Leg) or value.role is not role:
            raise ValueError(f"{attribute.name} must be a {role.value} Leg")

    return check


def _context_of(instance: CallPair, attribute: Any, value: object) -> None:
    if not isinstance(value, VisitContext):
        raise TypeError(f"{attribute.name} must be a VisitContext")
    if value.call_uuid != instance.call_uuid:
        raise ContextMismatchError(
            f"context of {value.call_uuid} given to call {instance.call_uuid}"
        )


@implementer(IPairListener)
class _NoListener:
    """Until a flow listens: the pair just lives until it ends."""

    def leg_attached(self, leg: Leg) -> None:
        pass

    def leg_dropped(self, leg: Leg) -> None:
        pass

    def leg_reattached(self, leg: Leg) -> None:
        pass

    def audio_received(self, leg: Leg, kind: Kind, payload: bytes) -> None:
        pass

    def dtmf_received(self, leg: Leg, digit: str) -> None:
        pass

    def pair_ended(self, pair: CallPair) -> None:
        pass


NO_LISTENER: IPairListener = _NoListener()


@define(eq=False)
class CallPair:
    """
    The one object a call UUID names: its legs, its context, its outcome.

    ``outcome`` is None until the pair ends, then never changes.
    """

    call_uuid: str = field(validator=_canonical, on_setattr=setters.frozen)
    visitor: Leg = field(validator=_role(Role.VISITOR), on_setattr=setters.frozen)
    context: VisitContext = field(validator=_context_of)
    started_at: float = field(validator=_time)
    resident: Leg | None = field(default=None, validator=_role(Role.RESIDENT))
    state: PairState = field(default=PairState.VISITOR)
    outcome: Outcome | None = field(
        default=None, validator=validators.optional(validators.instance_of(Outcome))
    )
    ended_at: float | None = None
    listener: IPairListener = field(default=NO_LISTENER, repr=False)
    _registry: SessionRegistry | None = field(
        default=None, repr=False, alias="registry"
    )
    # The resident deadline, while the pair expects its resident.
    _deadline: IDelayedCall | None = field(default=None, init=False, repr=False)
    _waiters: list[Deferred[Outcome]] | None = field(
        default=None, init=False, repr=False
    )

    @property
    def legs(self) -> tuple[Leg, ...]:
        resident = self.resident
        return (self.visitor,) if resident is None else (self.visitor, resident)

    def leg(self, role: Role) -> Leg | None:
        return self.visitor if role is Role.VISITOR else self.resident

    @property
    def ended(self) -> bool:
        return self.outcome is not None

    @property
    def expecting_resident(self) -> bool:
        return self._deadline is not None

    def end(self, outcome: Outcome) -> bool:
        """End the visit with ``outcome`` (see ``SessionRegistry.end``)."""
        if self._registry is None:
            raise RuntimeError("a pair outside a registry cannot end itself")
        return self._registry.end(self.call_uuid, outcome)

    def when_ended(self) -> Deferred[Outcome]:
        """A Deferred of its own for each caller, fired with the outcome."""
        if self.outcome is not None:
            done: Deferred[Outcome] = Deferred()
            done.callback(self.outcome)
            return done
        if self._waiters is None:
            self._waiters = []
        waiters = self._waiters
        waiter: Deferred[Outcome] = Deferred(lambda d: waiters.remove(d))
        waiters.append(waiter)
        return waiter

    def _listener_failed(self, event: str, leg: Leg | None) -> None:
        if self._registry is not None:
            self._registry._listener_failed(self, event, leg)
