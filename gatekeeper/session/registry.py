"""
The session registry: what a new connection's call UUID means.

AudioSocket carries nothing but a UUID, so the UUID alone must tie the
resident's leg to the visitor's.  The registry keeps one
:class:`~gatekeeper.session.callpair.CallPair` per UUID and answers each
connection's UUID frame (:meth:`SessionRegistry.bind`) with these rules, in
this order:

1. a UUID that is not canonical, a connection already bound, or a registry
   that is not running: refused;
2. a UUID with no live pair: refused if a pair of that UUID ended recently
   (a late leg of a finished call must not start a new visit), otherwise a
   new pair with this connection as its **visitor** leg;
3. a pair that expects its resident (the dialer called
   :meth:`~SessionRegistry.expect_resident` before it originated): the
   **resident** leg, exactly once per expectation (a flow that lets that
   leg go with :meth:`~SessionRegistry.release_resident` may expect another);
4. a pair whose visitor leg, or else whose resident leg, dropped less than
   the grace period ago: that leg **re-attached**, the flow told and the
   pair carrying on where it was;
5. anything else (a second visitor, a resident nobody asked for, a third
   leg): refused.

The wire cannot say which role a connection plays.  When two readings are
possible (the visitor dropped while its resident is expected, or both legs
dropped) the registry takes the first that applies above and logs the
ambiguity as a warning.

A refusal raises :class:`~gatekeeper.audiosocket.interfaces.CallRefused`
with its own reason slug; the protocol sends the hang-up frame and closes.
A refused connection never touches the pair it names.

Every timer (grace periods, resident deadlines, the bounded wait in
``stopService``) is on the injected clock and is cancelled when the pair
ends, so once every call has ended the registry holds nothing and schedules
nothing.  Recently ended UUIDs are remembered without timers: the list is
pruned by age whenever the registry is used.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from typing import Any

from attrs import define, field
from twisted.application import service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from gatekeeper.audiosocket.interfaces import (
    CallRefused,
    IAudioSocketLeg,
    ICallBinder,
    ICallReceiver,
)
from gatekeeper.session.callpair import (
    AttemptResult,
    CallPair,
    ContextMismatchError,
    Leg,
    LegState,
    Outcome,
    PairState,
    ResidentAttempt,
    Role,
    VisitContext,
)
from gatekeeper.session.interfaces import PairListenerFactory
from gatekeeper.session.uuids import InvalidCallUUID, canonical_uuid

__all__ = [
    "REFUSAL_REASONS",
    "RegistryCounters",
    "ResidentAlreadyBoundError",
    "SessionRegistry",
    "UnknownCallError",
]

REFUSAL_REASONS = frozenset(
    {
        "malformed_uuid",
        "uuid_mismatch",
        "connection_already_bound",
        "not_running",
        "shutting_down",
        "call_ended",
        "expectation_expired",
        "duplicate_visitor",
        "resident_not_expected",
        "third_leg",
        "context_invalid",
    }
)
"""Every ``CallRefused.reason`` the registry gives, for metrics labels."""


class UnknownCallError(KeyError):
    """No live pair has this UUID."""


class ResidentAlreadyBoundError(ValueError):
    """The pair holds a resident leg; a pair has at most one at a time."""


@define
class RegistryCounters:
    """Plain counts the metrics endpoint publishes; only ever incremented."""

    pairs_started: int = 0
    pairs_ended: Counter[str] = field(factory=Counter)  # by outcome
    refusals: Counter[str] = field(factory=Counter)  # by reason slug
    # By (role, pair state, flow phase) at the moment the connection dropped.
    drops: Counter[tuple[str, str, str]] = field(factory=Counter)
    reattachments: Counter[str] = field(factory=Counter)  # by role
    residents_expected: int = 0
    residents_attached: int = 0
    residents_released: int = 0
    ambiguous_binds: int = 0


_LOST = {Role.VISITOR: Outcome.VISITOR_LOST, Role.RESIDENT: Outcome.RESIDENT_LOST}


@implementer(ICallBinder)
class SessionRegistry(service.Service):
    """
    Binds connections to call pairs by UUID; see the module docstring.

    ``listener_factory`` is called with each new pair and returns its
    :class:`~gatekeeper.session.interfaces.IPairListener` (the visit flow);
    without one, pairs simply live until they end.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        grace_period: float = 10.0,
        listener_factory: PairListenerFactory | None = None,
        *,
        remember_ended: float = 300.0,
        announcement_ttl: float = 30.0,
        stop_timeout: float = 5.0,
    ) -> None:
        for name, value in (
            ("grace_period", grace_period),
            ("remember_ended", remember_ended),
            ("announcement_ttl", announcement_ttl),
            ("stop_timeout", stop_timeout),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, not {value}")
        self.clock = clock
        self.grace_period = grace_period
        self.listener_factory = listener_factory
        self.remember_ended = remember_ended
        self.announcement_ttl = announcement_ttl
        self.stop_timeout = stop_timeout
        self.counters = RegistryCounters()
        self._pairs: dict[str, CallPair] = {}
        self._bound: set[IAudioSocketLeg] = set()
        # Legs sent a hang-up frame whose connection has not closed yet.
        self._closing: set[Leg] = set()
        # Recently ended UUIDs: outcome and end time, oldest first in _ended_order.
        self._ended: dict[str, tuple[float, Outcome]] = {}
        self._ended_order: deque[tuple[float, str]] = deque()
        # AMI announcements (gate, channel) that arrived before their connection.
        self._announced: dict[str, tuple[float, str | None, str | None]] = {}
        self._announced_order: deque[tuple[float, str]] = deque()
        self._stopping = False
        self._stopped: Deferred[None] | None = None
        self._stop_timer: IDelayedCall | None = None

    # -- looking ---------------------------------------------------------

    def get(self, call_uuid: str) -> CallPair | None:
        """The live pair of ``call_uuid``, if any."""
        return self._pairs.get(canonical_uuid(call_uuid))

    def live_pairs(self) -> list[CallPair]:
        """Every live pair, oldest first (for a status page)."""
        return list(self._pairs.values())

    def __len__(self) -> int:
        return len(self._pairs)

    def when_ended(self, call_uuid: str) -> Deferred[Outcome]:
        """
        A Deferred of its own for each caller, fired with the pair's outcome.

        Fires at once for a pair that ended recently; fails with
        :class:`UnknownCallError` for a UUID the registry does not know.
        """
        call_uuid = canonical_uuid(call_uuid)
        pair = self._pairs.get(call_uuid)
        if pair is not None:
            return pair.when_ended()
        self._forget_old(self.clock.seconds())
        ended = self._ended.get(call_uuid)
        if ended is not None:
            return succeed(ended[1])
        return fail(UnknownCallError(call_uuid))

    # -- binding (ICallBinder) -------------------------------------------

    def bind(self, call_uuid: str, leg: IAudioSocketLeg) -> ICallReceiver:
        connection = leg
        try:
            return self._bind(call_uuid, connection)
        except CallRefused as refusal:
            self.counters.refusals[refusal.reason] += 1
            pair = self._pairs.get(call_uuid) if isinstance(call_uuid, str) else None
            self._log.warn(
                "refused connection from {peer} for call {call_uuid}: "
                "{reason} ({detail})",
                call_uuid=call_uuid,
                leg="unbound",
                state=pair.state.value if pair is not None else None,
                peer=getattr(connection, "peer", None),
                reason=refusal.reason,
                detail=refusal.detail,
            )
            raise

    def _bind(self, call_uuid: str, connection: IAudioSocketLeg) -> ICallReceiver:
        try:
            canonical = canonical_uuid(call_uuid)
        except InvalidCallUUID as e:
            raise CallRefused("malformed_uuid", str(e)) from None
        if canonical != call_uuid:
            # The protocol hands over the wire's canonical form; anything else
            # means somebody reformatted it on the way.
            raise CallRefused("malformed_uuid", f"{call_uuid!r} is not lowercase")
        if getattr(connection, "call_uuid", call_uuid) != call_uuid:
            raise CallRefused(
                "uuid_mismatch",
                f"the connection announced {connection.call_uuid!r}",
            )
        if connection in self._bound:
            raise CallRefused("connection_already_bound", "one connection, one pair")
        if self._stopping:
            raise CallRefused("shutting_down", "gatekeeper is stopping")
        if not self.running:
            raise CallRefused("not_running", "the session registry is not started")
        now = self.clock.seconds()
        pair = self._pairs.get(call_uuid)
        if pair is None:
            self._forget_old(now)
            ended = self._ended.get(call_uuid)
            if ended is not None:
                ended_at, outcome = ended
                reason = (
                    "expectation_expired"
                    if outcome is Outcome.RESIDENT_UNREACHABLE
                    else "call_ended"
                )
                raise CallRefused(
                    reason, f"ended as {outcome.value} {now - ended_at:.1f}s ago"
                )
            return self._start_pair(call_uuid, connection, now)
        return self._join(pair, connection, now)

    def _start_pair(
        self, call_uuid: str, connection: IAudioSocketLeg, now: float
    ) -> Leg:
        context = VisitContext(call_uuid=call_uuid, started_at=now)
        announced = self._announced.pop(call_uuid, None)
        if announced is not None and now - announced[0] <= self.announcement_ttl:
            context.gate, context.visitor_channel = announced[1], announced[2]
        leg = Leg(Role.VISITOR, connection, attached_at=now)
        pair = CallPair(
            call_uuid, visitor=leg, context=context, started_at=now, registry=self
        )
        leg.pair = pair
        self._pairs[call_uuid] = pair
        self._bound.add(connection)
        self.counters.pairs_started += 1
        self._emit(
            LogLevel.info,
            "new call {call_uuid}: visitor leg from {peer}",
            pair,
            Role.VISITOR,
            peer=getattr(connection, "peer", None),
            gate=context.gate,
        )
        if self.listener_factory is not None:
            try:
                pair.listener = self.listener_factory(pair)
            except Exception:
                self._listener_failed(pair, "listener_factory", leg)
                return leg
        self._tell(pair, leg, "leg_attached", leg)
        return leg

    def _join(self, pair: CallPair, connection: IAudioSocketLeg, now: float) -> Leg:
        visitor, resident = pair.visitor, pair.resident
        visitor_back = visitor.state is LegState.DROPPED
        resident_back = resident is not None and resident.state is LegState.DROPPED
        if pair.expecting_resident:
            if visitor_back:
                self._ambiguous(pair, connection, "expected resident", "visitor")
            return self._attach_resident(pair, connection, now)
        if visitor_back:
            if resident_back:
                self._ambiguous(pair, connection, "visitor", "resident")
            return self._reattach(pair, visitor, connection, now)
        if resident_back:
            assert resident is not None
            return self._reattach(pair, resident, connection, now)
        if resident is not None:
            raise CallRefused(
                "third_leg", f"visitor {visitor.state}, resident {resident.state}"
            )
        if pair.context.resident_attempts:
            raise CallRefused(
                "resident_not_expected",
                f"resident call {pair.context.resident_attempts[-1].number} was "
                f"{pair.context.resident_attempts[-1].result}",
            )
        raise CallRefused("duplicate_visitor", f"the visitor leg is {visitor.state}")

    def _attach_resident(
        self, pair: CallPair, connection: IAudioSocketLeg, now: float
    ) -> Leg:
        try:
            pair.context.check(pair.call_uuid)
        except ContextMismatchError as e:
            self._end(pair, Outcome.FAILED)
            raise CallRefused("context_invalid", str(e)) from None
        self._settle_attempt(pair, AttemptResult.ANSWERED, now)
        leg = Leg(Role.RESIDENT, connection, attached_at=now, pair=pair)
        pair.resident = leg
        pair.state = PairState.CONNECTED
        self._bound.add(connection)
        self.counters.residents_attached += 1
        self._emit(
            LogLevel.info,
            "resident leg of {call_uuid} attached from {peer} after {waited:.1f}s",
            pair,
            Role.RESIDENT,
            peer=getattr(connection, "peer", None),
            waited=now - pair.context.resident_attempts[-1].expected_at,
        )
        self._tell(pair, leg, "leg_attached", leg)
        return leg

    def _reattach(
        self, pair: CallPair, leg: Leg, connection: IAudioSocketLeg, now: float
    ) -> Leg:
        try:
            pair.context.check(pair.call_uuid)
        except ContextMismatchError as e:
            self._end(pair, Outcome.FAILED)
            raise CallRefused("context_invalid", str(e)) from None
        grace, leg._grace = leg._grace, None
        if grace is not None and grace.active():
            grace.cancel()
        away = now - leg.dropped_at if leg.dropped_at is not None else 0.0
        leg.connection = connection
        leg.state = LegState.LIVE
        leg.dropped_at = None
        leg.attachments += 1
        self._bound.add(connection)
        self.counters.reattachments[leg.role.value] += 1
        self._emit(
            LogLevel.info,
            "{leg} leg of {call_uuid} re-attached from {peer} after {away:.1f}s",
            pair,
            leg.role,
            peer=getattr(connection, "peer", None),
            away=away,
        )
        self._tell(pair, leg, "leg_reattached", leg)
        return leg

    def _ambiguous(
        self, pair: CallPair, connection: IAudioSocketLeg, taken: str, other: str
    ) -> None:
        self.counters.ambiguous_binds += 1
        self._emit(
            LogLevel.warn,
            "connection from {peer} for {call_uuid} may be the {taken} or the "
            "{other}; taking it as the {taken}",
            pair,
            None,
            peer=getattr(connection, "peer", None),
            taken=taken,
            other=other,
        )

    # -- the resident's leg ------------------------------------------------

    def expect_resident(
        self, call_uuid: str, deadline_seconds: float, target: str | None = None
    ) -> ResidentAttempt:
        """
        Accept one resident leg for ``call_uuid`` until ``deadline_seconds`` from now.

        The dialer calls this before it originates.  Calling it again (a new
        attempt) replaces the deadline.  If no leg has arrived by then the
        pair ends as ``resident_unreachable``; a flow that wants to try
        someone else withdraws the attempt first (:meth:`withdraw_resident`).
        Raises :class:`~gatekeeper.session.uuids.InvalidCallUUID`,
        :class:`UnknownCallError` or, while the pair holds a resident leg
        (see :meth:`release_resident`), :class:`ResidentAlreadyBoundError`.
        """
        call_uuid = canonical_uuid(call_uuid)
        if not (
            isinstance(deadline_seconds, int | float)
            and math.isfinite(deadline_seconds)
            and deadline_seconds > 0
        ):
            raise ValueError(
                f"deadline must be a positive number of seconds: {deadline_seconds!r}"
            )
        pair = self._pairs.get(call_uuid)
        if pair is None:
            raise UnknownCallError(call_uuid)
        if pair.resident is not None:
            raise ResidentAlreadyBoundError(
                f"call {call_uuid} already has its resident leg"
            )
        now = self.clock.seconds()
        if pair.expecting_resident:
            self._settle_attempt(pair, AttemptResult.WITHDRAWN, now)
        attempt = ResidentAttempt(
            number=len(pair.context.resident_attempts) + 1,
            target=target,
            expected_at=now,
            deadline_at=now + deadline_seconds,
        )
        pair.context.resident_attempts = (*pair.context.resident_attempts, attempt)
        pair._deadline = self.clock.callLater(
            deadline_seconds, self._deadline_passed, pair
        )
        pair.state = PairState.CALLING
        self.counters.residents_expected += 1
        self._emit(
            LogLevel.info,
            "call {call_uuid} expects its resident ({target}) within {deadline}s",
            pair,
            Role.RESIDENT,
            target=target,
            deadline=deadline_seconds,
            attempt=attempt.number,
        )
        return attempt

    def withdraw_resident(self, call_uuid: str) -> bool:
        """Stop expecting the resident (the dialer failed); False if nothing was."""
        pair = self._pairs.get(canonical_uuid(call_uuid))
        if pair is None or not pair.expecting_resident:
            return False
        self._settle_attempt(pair, AttemptResult.WITHDRAWN, self.clock.seconds())
        pair.state = PairState.VISITOR
        self._emit(
            LogLevel.info,
            "call {call_uuid} no longer expects its resident",
            pair,
            Role.RESIDENT,
        )
        self._end_if_abandoned(pair)
        return True

    def release_resident(self, call_uuid: str) -> bool:
        """
        Let the resident's leg go so that someone else may be called.

        For a flow whose resident answered and then left (or never decided):
        the leg is hung up (or, if dropped, no longer waited for) and taken
        off the pair, and a new :meth:`expect_resident` may bind another
        resident leg.  Until then a connection for the UUID is refused as
        ``resident_not_expected``.  False if the pair has no resident leg.
        """
        pair = self._pairs.get(canonical_uuid(call_uuid))
        if pair is None or pair.resident is None:
            return False
        leg = pair.resident
        self._retire(leg)
        pair.resident = None
        pair.state = PairState.VISITOR
        self.counters.residents_released += 1
        self._emit(
            LogLevel.info,
            "call {call_uuid} let its resident leg go ({leg_state})",
            pair,
            Role.RESIDENT,
            leg_state=leg.state.value,
        )
        self._end_if_abandoned(pair)
        return True

    def _settle_attempt(
        self, pair: CallPair, result: AttemptResult, now: float
    ) -> None:
        """
        Record how the pending attempt ended and cancel its deadline.

        Also called from the deadline itself, which is no longer active then.
        """
        deadline, pair._deadline = pair._deadline, None
        if deadline is None:
            return
        if deadline.active():
            deadline.cancel()
        context = pair.context
        last = context.resident_attempts[-1]
        settled = ResidentAttempt(
            number=last.number,
            target=last.target,
            expected_at=last.expected_at,
            deadline_at=last.deadline_at,
            result=result,
            resolved_at=now,
        )
        context.resident_attempts = (*context.resident_attempts[:-1], settled)

    def _deadline_passed(self, pair: CallPair) -> None:
        self._settle_attempt(pair, AttemptResult.UNREACHABLE, self.clock.seconds())
        self._emit(
            LogLevel.warn,
            "resident leg of {call_uuid} did not arrive by its deadline",
            pair,
            Role.RESIDENT,
        )
        self._end(pair, Outcome.RESIDENT_UNREACHABLE)

    # -- AMI announcements -------------------------------------------------

    def announce_visit(
        self, call_uuid: str, gate: str | None, visitor_channel: str | None
    ) -> None:
        """
        Record the gate and visitor channel from the gate's AMI ``UserEvent``.

        The event and the AudioSocket connection race on two sockets: if the
        pair exists its context is updated, otherwise the announcement waits
        up to ``announcement_ttl`` seconds for the connection.
        """
        call_uuid = canonical_uuid(call_uuid)
        pair = self._pairs.get(call_uuid)
        if pair is not None:
            pair.context.gate = gate
            pair.context.visitor_channel = visitor_channel
            return
        now = self.clock.seconds()
        self._forget_old(now)
        # Checked now, so a bad header fails here rather than in a later bind.
        VisitContext(call_uuid, now, gate=gate, visitor_channel=visitor_channel)
        self._announced[call_uuid] = (now, gate, visitor_channel)
        self._announced_order.append((now, call_uuid))

    # -- losing and hanging up legs -------------------------------------------

    def _connection_lost(self, leg: Leg, reason: Failure) -> None:
        """A leg's connection is gone: a drop, or the close we asked for."""
        connection = leg.connection
        if connection is not None:
            self._bound.discard(connection)
        leg.connection = None
        pair = leg.pair
        assert pair is not None
        if leg.state is LegState.HANGING_UP:
            leg.state = LegState.CLOSED
            self._closing.discard(leg)
            if not self._closing and self._stopped is not None:
                self._stop_finished()
            return
        if leg.state is not LegState.LIVE:
            return
        now = self.clock.seconds()
        leg.state = LegState.DROPPED
        leg.dropped_at = now
        role = leg.role
        self.counters.drops[(role.value, pair.state.value, pair.context.phase)] += 1
        self._emit(
            LogLevel.info,
            "{leg} leg of {call_uuid} dropped ({why}); waiting {grace}s for it",
            pair,
            role,
            why=reason.getErrorMessage(),
            grace=self.grace_period,
            phase=pair.context.phase,
        )
        if self.grace_period > 0:
            leg._grace = self.clock.callLater(
                self.grace_period, self._grace_expired, leg
            )
        self._tell(pair, leg, "leg_dropped", leg)
        if self.grace_period <= 0 and leg.state is LegState.DROPPED:
            self._grace_expired(leg)

    def _grace_expired(self, leg: Leg) -> None:
        leg._grace = None
        pair = leg.pair
        assert pair is not None
        if pair.ended or leg.state is not LegState.DROPPED:
            return
        leg.state = LegState.CLOSED
        self._emit(
            LogLevel.warn,
            "{leg} leg of {call_uuid} did not come back within {grace}s",
            pair,
            leg.role,
            grace=self.grace_period,
        )
        self._end(pair, _LOST[leg.role])

    def _hang_up_leg(self, leg: Leg) -> None:
        """The flow hangs one leg up on purpose (see ``Leg.hang_up``)."""
        pair = leg.pair
        assert pair is not None
        if pair.ended:
            return
        if leg.state is LegState.LIVE:
            self._emit(
                LogLevel.info, "hanging up {leg} leg of {call_uuid}", pair, leg.role
            )
            self._send_hang_up(leg)
        elif leg.state is LegState.DROPPED:
            grace, leg._grace = leg._grace, None
            if grace is not None and grace.active():
                grace.cancel()
            leg.state = LegState.CLOSED
        self._end_if_abandoned(pair)

    def _end_if_abandoned(self, pair: CallPair) -> None:
        """
        End as ``failed`` a pair that nothing can bring back to life.

        With every leg hung up on purpose and no resident expected, no
        connection may join and no timer will end it: without this it would
        stay in the registry for ever.
        """
        if pair.ended or pair.expecting_resident:
            return
        if any(leg.state in (LegState.LIVE, LegState.DROPPED) for leg in pair.legs):
            return
        self._emit(
            LogLevel.warn,
            "every leg of {call_uuid} was hung up without an outcome",
            pair,
            None,
        )
        self._end(pair, Outcome.FAILED)

    def _retire(self, leg: Leg) -> None:
        """Done with this leg: stop its grace period, hang it up if it is live."""
        grace, leg._grace = leg._grace, None
        if grace is not None and grace.active():
            grace.cancel()
        if leg.state is LegState.LIVE:
            self._send_hang_up(leg)
        elif leg.state is LegState.DROPPED:
            leg.state = LegState.CLOSED

    def _send_hang_up(self, leg: Leg) -> None:
        leg.state = LegState.HANGING_UP
        connection = leg.connection
        if connection is None:
            leg.state = LegState.CLOSED
            return
        self._closing.add(leg)
        connection.hang_up()

    # -- ending ----------------------------------------------------------

    def end(self, call_uuid: str, outcome: Outcome) -> bool:
        """
        End the pair of ``call_uuid`` with ``outcome`` and hang up its legs.

        False if there is no such live pair (it ended already, perhaps on a
        grace expiry a moment ago): the first outcome stands.
        """
        if not isinstance(outcome, Outcome):
            raise TypeError(f"{outcome!r} is not an Outcome")
        pair = self._pairs.get(canonical_uuid(call_uuid))
        if pair is None:
            return False
        return self._end(pair, outcome)

    def _end(self, pair: CallPair, outcome: Outcome) -> bool:
        if pair.outcome is not None:
            return False
        now = self.clock.seconds()
        pair.outcome = outcome
        pair.ended_at = now
        if pair.expecting_resident:
            self._settle_attempt(pair, AttemptResult.ABANDONED, now)
        pair.state = PairState.ENDED
        call_uuid = pair.call_uuid
        del self._pairs[call_uuid]
        for leg in pair.legs:
            self._retire(leg)
        self._forget_old(now)
        if self.remember_ended > 0:
            self._ended[call_uuid] = (now, outcome)
            self._ended_order.append((now, call_uuid))
        self.counters.pairs_ended[outcome.value] += 1
        self._emit(
            LogLevel.info,
            "call {call_uuid} ended: {outcome} after {duration:.1f}s",
            pair,
            None,
            outcome=outcome.value,
            duration=now - pair.started_at,
        )
        self._tell(pair, None, "pair_ended", pair)
        waiters, pair._waiters = pair._waiters, None
        for waiter in waiters or ():
            waiter.callback(outcome)
        return True

    def _forget_old(self, now: float) -> None:
        """Drop remembered endings and announcements that are too old to matter."""
        horizon = now - self.remember_ended
        order, ended = self._ended_order, self._ended
        while order and order[0][0] <= horizon:
            at, call_uuid = order.popleft()
            if ended.get(call_uuid, (None,))[0] == at:
                del ended[call_uuid]
        horizon = now - self.announcement_ttl
        order, announced = self._announced_order, self._announced
        while order and order[0][0] < horizon:
            at, call_uuid = order.popleft()
            if announced.get(call_uuid, (None,))[0] == at:
                del announced[call_uuid]

    # -- the listener ----------------------------------------------------

    def _tell(self, pair: CallPair, leg: Leg | None, event: str, *args: Any) -> None:
        try:
            getattr(pair.listener, event)(*args)
        except Exception:
            self._listener_failed(pair, event, leg)

    def _listener_failed(self, pair: CallPair, event: str, leg: Leg | None) -> None:
        """One faulty flow ends its own pair, never the registry."""
        self._log.failure(
            "listener of {call_uuid} failed on {event}",
            call_uuid=pair.call_uuid,
            leg=leg.role.value if leg is not None else None,
            state=pair.state.value,
            event=event,
        )
        self._end(pair, Outcome.FAILED)

    def _emit(
        self,
        level: LogLevel,
        format: str,
        pair: CallPair,
        role: Role | None,
        **fields: Any,
    ) -> None:
        self._log.emit(
            level,
            format,
            call_uuid=pair.call_uuid,
            leg=role.value if role is not None else None,
            state=pair.state.value,
            **fields,
        )

    # -- service ---------------------------------------------------------

    def startService(self) -> None:
        self._stopping = False
        super().startService()

    def stopService(self) -> Deferred[None]:
        """
        End every pair as ``shutdown`` and wait for their connections to close.

        Each live leg gets its hang-up frame, so Asterisk's dialplan carries on
        instead of talking to a dead socket; the wait is bounded by
        ``stop_timeout`` on the registry's clock.
        """
        super().stopService()
        self._stopping = True
        for pair in list(self._pairs.values()):
            self._end(pair, Outcome.SHUTDOWN)
        self._announced.clear()
        self._announced_order.clear()
        if not self._closing:
            return succeed(None)
        self._stopped = Deferred()
        self._stop_timer = self.clock.callLater(self.stop_timeout, self._stop_timed_out)
        return self._stopped

    def _stop_timed_out(self) -> None:
        self._stop_timer = None
        self._log.warn(
            "{count} connections still open {timeout}s after their hang-up frames",
            count=len(self._closing),
            timeout=self.stop_timeout,
        )
        for leg in self._closing:
            leg.state = LegState.CLOSED
            if leg.connection is not None:
                self._bound.discard(leg.connection)
        self._closing.clear()
        self._stop_finished()

    def _stop_finished(self) -> None:
        timer, self._stop_timer = self._stop_timer, None
        if timer is not None and timer.active():
            timer.cancel()
        stopped, self._stopped = self._stopped, None
        if stopped is not None:
            stopped.callback(None)
