"""
Tests for :mod:`gatekeeper.session.registry`: one rule, refusal or timer per test.

Connections are :class:`FakeConnection` doubles of ``IAudioSocketLeg``; time is
a ``task.Clock``.  A fake connection closes only when the test says so, as a
real one closes only after the reactor has run: hanging up is never
synchronous.
"""

from __future__ import annotations

import uuid
from typing import Any

from attrs import define, field
from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyClass, verifyObject

from gatekeeper.audiosocket.interfaces import (
    CallRefused,
    IAudioSocketLeg,
    ICallBinder,
    ICallReceiver,
)
from gatekeeper.audiosocket.wire import Kind
from gatekeeper.session.callpair import (
    NO_LISTENER,
    AttemptResult,
    CallPair,
    Leg,
    LegState,
    Outcome,
    PairState,
    Role,
)
from gatekeeper.session.interfaces import IPairListener
from gatekeeper.session.registry import (
    REFUSAL_REASONS,
    ResidentAlreadyBoundError,
    SessionRegistry,
    UnknownCallError,
)
from gatekeeper.session.uuids import InvalidCallUUID

GRACE = 10.0


def new_uuid(n: int = 1) -> str:
    """A canonical UUID that differs per ``n``, stable across runs."""
    return str(uuid.UUID(int=0x1234_5678_9ABC_4DEF_8000_0000_0000_0000 + n))


@implementer(IAudioSocketLeg)
class FakeConnection:
    """An ``IAudioSocketLeg`` that records what the registry did to it."""

    _ports = iter(range(40000, 1 << 30))

    def __init__(self, call_uuid: str) -> None:
        self.call_uuid = call_uuid
        self.peer = f"127.0.0.1:{next(self._ports)}"
        self.connected = True
        self.sent: list[tuple[Kind, bytes]] = []
        self.hang_ups = 0
        self.receiver: ICallReceiver | None = None
        self.refusal: CallRefused | None = None

    def send_audio(self, kind: Kind, payload: bytes) -> bool:
        if not self.connected or self.hang_ups:
            return False
        self.sent.append((kind, payload))
        return True

    def send_frame(self, frame: bytes) -> bool:
        return self.send_audio(Kind(frame[0]), bytes(frame[3:]))

    def hang_up(self) -> None:
        self.hang_ups += 1

    def close(self, reason: type[Exception] = ConnectionDone) -> None:
        """The connection is gone (Asterisk closed it, or our hang-up did)."""
        self.connected = False
        receiver, self.receiver = self.receiver, None
        if receiver is not None:
            receiver.connection_lost(Failure(reason()))


def connect(registry: SessionRegistry, call_uuid: str) -> FakeConnection:
    """Bind a new connection as the protocol would; refusals are recorded."""
    connection = FakeConnection(call_uuid)
    try:
        connection.receiver = registry.bind(call_uuid, connection)
    except CallRefused as refusal:
        connection.refusal = refusal
        connection.connected = False
    return connection


@implementer(IPairListener)
@define
class RecordingListener:
    """Writes down what it is told, as ``(event, role or outcome)``."""

    pair: CallPair
    events: list[tuple[str, Any]] = field(factory=list)
    raise_on: str | None = None

    def _record(self, event: str, detail: Any) -> None:
        self.events.append((event, detail))
        if event == self.raise_on:
            raise RuntimeError(f"listener fails on {event}")

    def leg_attached(self, leg: Leg) -> None:
        self._record("attached", leg.role)

    def leg_dropped(self, leg: Leg) -> None:
        self._record("dropped", leg.role)

    def leg_reattached(self, leg: Leg) -> None:
        self._record("reattached", leg.role)

    def audio_received(self, leg: Leg, kind: Kind, payload: bytes) -> None:
        self._record("audio", (leg.role, kind, payload))

    def dtmf_received(self, leg: Leg, digit: str) -> None:
        self._record("dtmf", (leg.role, digit))

    def pair_ended(self, pair: CallPair) -> None:
        self._record("ended", pair.outcome)


class RegistryTestCase(SynchronousTestCase):
    """A started registry on a fresh clock, its listeners kept by UUID."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.listeners: dict[str, RecordingListener] = {}
        self.events: list[dict[str, Any]] = []
        self.registry = self.make_registry()

    def make_registry(self, **kwargs: Any) -> SessionRegistry:
        def listen(pair: CallPair) -> RecordingListener:
            listener = RecordingListener(pair)
            self.listeners[pair.call_uuid] = listener
            return listener

        kwargs.setdefault("grace_period", GRACE)
        registry = SessionRegistry(self.clock, listener_factory=listen, **kwargs)
        registry._log = Logger(observer=self.events.append)
        registry.startService()
        return registry

    def pair_of(self, call_uuid: str, resident: bool = False) -> CallPair:
        """A pair with its visitor leg, and its resident's leg if asked."""
        connect(self.registry, call_uuid)
        pair = self.registry.get(call_uuid)
        assert pair is not None
        if resident:
            self.registry.expect_resident(call_uuid, 30)
            connect(self.registry, call_uuid)
        return pair

    def assertRefused(self, connection: FakeConnection, reason: str) -> None:
        self.assertIsNotNone(connection.refusal, "the connection was accepted")
        assert connection.refusal is not None
        self.assertEqual(connection.refusal.reason, reason)
        self.assertIn(reason, REFUSAL_REASONS)
        self.assertEqual(self.registry.counters.refusals[reason], 1)
        self.assertIsNone(connection.receiver)

    def assertIdle(self) -> None:
        """Nothing left behind: no pairs, bound connections or timers."""
        self.assertEqual(self.registry.live_pairs(), [])
        self.assertEqual(self.registry._bound, set())
        self.assertEqual(self.clock.getDelayedCalls(), [])


class InterfaceTests(SynchronousTestCase):
    def test_registry_is_a_binder(self) -> None:
        """The registry provides the seam the AudioSocket protocol calls."""
        self.assertTrue(verifyObject(ICallBinder, SessionRegistry(Clock())))

    def test_leg_is_a_receiver(self) -> None:
        """A Leg receives its connection's frames."""
        self.assertTrue(verifyClass(ICallReceiver, Leg))

    def test_listeners_provide_the_interface(self) -> None:
        """The default listener and the test's both provide IPairListener."""
        self.assertTrue(verifyObject(IPairListener, NO_LISTENER))
        self.assertTrue(verifyClass(IPairListener, RecordingListener))

    def test_bad_configuration(self) -> None:
        """Negative or infinite periods are refused at construction."""
        for name in ("grace_period", "remember_ended", "stop_timeout"):
            for value in (-1.0, float("inf"), float("nan")):
                self.assertRaises(ValueError, SessionRegistry, Clock(), **{name: value})


class BindingTests(RegistryTestCase):
    def test_unknown_uuid_starts_a_pair(self) -> None:
        """An unknown UUID becomes a new pair with the connection as its visitor."""
        call = new_uuid()
        connection = connect(self.registry, call)
        pair = self.registry.get(call)
        assert pair is not None
        self.assertIs(connection.receiver, pair.visitor)
        self.assertIs(pair.visitor.connection, connection)
        self.assertEqual(pair.visitor.role, Role.VISITOR)
        self.assertEqual(pair.visitor.state, LegState.LIVE)
        self.assertIsNone(pair.resident)
        self.assertEqual(pair.state, PairState.VISITOR)
        self.assertEqual(pair.context.call_uuid, call)
        self.assertEqual(self.listeners[call].events, [("attached", Role.VISITOR)])
        self.assertEqual(self.registry.counters.pairs_started, 1)

    def test_two_uuids_two_pairs(self) -> None:
        """Different UUIDs never share a pair."""
        a, b = connect(self.registry, new_uuid(1)), connect(self.registry, new_uuid(2))
        pairs = self.registry.live_pairs()
        self.assertEqual([p.call_uuid for p in pairs], [new_uuid(1), new_uuid(2)])
        self.assertIs(pairs[0].visitor.connection, a)
        self.assertIs(pairs[1].visitor.connection, b)

    def test_expected_resident_joins_the_pair(self) -> None:
        """After expect_resident the same UUID's next connection is the resident."""
        call = new_uuid()
        pair = self.pair_of(call)
        attempt = self.registry.expect_resident(call, 30, target="PJSIP/101")
        self.assertEqual(pair.state, PairState.CALLING)
        self.assertEqual(attempt.number, 1)
        self.clock.advance(3)
        connection = connect(self.registry, call)
        self.assertIs(self.registry.get(call), pair)
        assert pair.resident is not None
        self.assertIs(connection.receiver, pair.resident)
        self.assertEqual(pair.resident.role, Role.RESIDENT)
        self.assertEqual(pair.state, PairState.CONNECTED)
        self.assertFalse(pair.expecting_resident)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        (settled,) = pair.context.resident_attempts
        self.assertEqual(settled.result, AttemptResult.ANSWERED)
        self.assertEqual(settled.resolved_at, 3)
        self.assertEqual(settled.target, "PJSIP/101")
        self.assertEqual(
            self.listeners[call].events,
            [("attached", Role.VISITOR), ("attached", Role.RESIDENT)],
        )
        self.assertEqual(self.registry.counters.residents_attached, 1)

    def test_context_survives_the_handover(self) -> None:
        """What the visitor's leg left in the context is what the resident's sees."""
        call = new_uuid()
        pair = self.pair_of(call)
        pair.context.apartment = "12B"
        pair.context.recording = f"var/recordings/{call}.wav"
        pair.context.enter_phase("dialling", 5.0)
        context = pair.context
        self.registry.expect_resident(call, 30)
        connection = connect(self.registry, call)
        assert isinstance(connection.receiver, Leg)
        self.assertIs(connection.receiver.pair, pair)
        self.assertIs(pair.context, context)
        self.assertEqual(pair.context.apartment, "12B")
        self.assertEqual(pair.context.phase, "dialling")

    def test_visitor_reattaches_within_grace(self) -> None:
        """A visitor leg that drops and comes back in time is the same leg again."""
        call = new_uuid()
        pair = self.pair_of(call)
        visitor = pair.visitor
        first = visitor.connection
        assert isinstance(first, FakeConnection)
        first.close(ConnectionLost)
        self.assertEqual(visitor.state, LegState.DROPPED)
        self.assertIsNone(visitor.connection)
        self.clock.advance(GRACE - 0.001)
        second = connect(self.registry, call)
        self.assertIs(second.receiver, visitor)
        self.assertIs(visitor.connection, second)
        self.assertEqual(visitor.state, LegState.LIVE)
        self.assertEqual(visitor.attachments, 2)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(
            self.listeners[call].events,
            [
                ("attached", Role.VISITOR),
                ("dropped", Role.VISITOR),
                ("reattached", Role.VISITOR),
            ],
        )
        self.assertEqual(self.registry.counters.reattachments["visitor"], 1)
        self.clock.advance(GRACE * 10)
        self.assertIs(self.registry.get(call), pair)
        self.assertFalse(pair.ended)

    def test_resident_reattaches_within_grace(self) -> None:
        """A resident leg that drops and comes back in time resumes the pair."""
        call = new_uuid()
        pair = self.pair_of(call, resident=True)
        resident = pair.resident
        assert resident is not None and isinstance(resident.connection, FakeConnection)
        resident.connection.close(ConnectionLost)
        self.assertEqual(resident.state, LegState.DROPPED)
        self.clock.advance(GRACE / 2)
        again = connect(self.registry, call)
        self.assertIs(again.receiver, resident)
        self.assertEqual(resident.state, LegState.LIVE)
        self.assertEqual(pair.state, PairState.CONNECTED)
        self.assertEqual(self.registry.counters.reattachments["resident"], 1)
        self.assertEqual(self.listeners[call].events[-1], ("reattached", Role.RESIDENT))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_reattached_leg_sends_on_its_new_connection(self) -> None:
        """Audio the flow sends after a reattachment goes to the new connection."""
        pair = self.pair_of(new_uuid())
        first = pair.visitor.connection
        assert isinstance(first, FakeConnection)
        first.close()
        self.assertFalse(pair.visitor.send_audio(b"\x00\x01"))
        second = connect(self.registry, pair.call_uuid)
        self.assertTrue(pair.visitor.send_audio(b"\x00\x01"))
        self.assertEqual(first.sent, [])
        self.assertEqual(second.sent, [(Kind.SLIN, b"\x00\x01")])

    def test_visitor_dropped_while_resident_expected_is_ambiguous(self) -> None:
        """With the visitor dropped and a resident expected, the resident wins."""
        call = new_uuid()
        pair = self.pair_of(call)
        self.registry.expect_resident(call, 30)
        assert isinstance(pair.visitor.connection, FakeConnection)
        pair.visitor.connection.close()
        connection = connect(self.registry, call)
        self.assertIs(connection.receiver, pair.resident)
        self.assertEqual(pair.visitor.state, LegState.DROPPED)
        self.assertEqual(self.registry.counters.ambiguous_binds, 1)
        self.assertIn("may be the", self.events[-2]["log_format"])
        # The visitor's leg can still come back.
        back = connect(self.registry, call)
        self.assertIs(back.receiver, pair.visitor)

    def test_both_dropped_visitor_comes_back_first(self) -> None:
        """With both legs dropped, the visitor comes back first, then the resident."""
        call = new_uuid()
        pair = self.pair_of(call, resident=True)
        assert pair.resident is not None
        for leg in pair.legs:
            assert isinstance(leg.connection, FakeConnection)
            leg.connection.close()
        first, second = connect(self.registry, call), connect(self.registry, call)
        self.assertIs(first.receiver, pair.visitor)
        self.assertIs(second.receiver, pair.resident)
        self.assertEqual(self.registry.counters.ambiguous_binds, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class RefusalTests(RegistryTestCase):
    def snapshot(self, pair: CallPair) -> Any:
        return (
            pair.state,
            pair.outcome,
            [
                (leg.role, leg.state, leg.connection, leg.attachments)
                for leg in pair.legs
            ],
            list(self.listeners[pair.call_uuid].events),
            len(self.clock.getDelayedCalls()),
        )

    def test_third_leg_refused(self) -> None:
        """A third connection is refused; the pair with both legs carries on."""
        call = new_uuid()
        pair = self.pair_of(call, resident=True)
        before = self.snapshot(pair)
        third = connect(self.registry, call)
        self.assertRefused(third, "third_leg")
        self.assertEqual(self.snapshot(pair), before)

    def test_second_visitor_refused(self) -> None:
        """A second connection on a live UUID nobody called is refused."""
        call = new_uuid()
        pair = self.pair_of(call)
        before = self.snapshot(pair)
        self.assertRefused(connect(self.registry, call), "duplicate_visitor")
        self.assertEqual(self.snapshot(pair), before)

    def test_resident_nobody_expects_refused(self) -> None:
        """After the expectation is withdrawn, a resident's leg is refused."""
        call = new_uuid()
        pair = self.pair_of(call)
        self.registry.expect_resident(call, 30)
        self.assertTrue(self.registry.withdraw_resident(call))
        self.assertEqual(pair.state, PairState.VISITOR)
        self.assertEqual(
            pair.context.resident_attempts[0].result, AttemptResult.WITHDRAWN
        )
        before = self.snapshot(pair)
        self.assertRefused(connect(self.registry, call), "resident_not_expected")
        self.assertEqual(self.snapshot(pair), before)

    def test_expired_expectation_refused(self) -> None:
        """A resident's leg after its deadline is refused, naming the expiry."""
        call = new_uuid()
        self.pair_of(call)
        self.registry.expect_resident(call, 30)
        self.clock.advance(30)
        self.assertRefused(connect(self.registry, call), "expectation_expired")
        self.assertIsNone(self.registry.get(call))

    def test_leg_of_ended_call_refused(self) -> None:
        """A connection for a call that just ended does not start a new visit."""
        call = new_uuid()
        self.pair_of(call)
        self.registry.end(call, Outcome.DENIED)
        self.assertRefused(connect(self.registry, call), "call_ended")
        self.assertEqual(self.registry.live_pairs(), [])

    def test_reattach_after_grace_refused(self) -> None:
        """A leg that comes back after its grace period is refused."""
        call = new_uuid()
        pair = self.pair_of(call)
        assert isinstance(pair.visitor.connection, FakeConnection)
        pair.visitor.connection.close()
        self.clock.advance(GRACE)
        self.assertRefused(connect(self.registry, call), "call_ended")

    def test_malformed_uuid_refused(self) -> None:
        """Text that is not a canonical UUID is refused before any lookup."""
        for n, text in enumerate(
            ["", "not-a-uuid", new_uuid().replace("-", ""), "{" + new_uuid() + "}"], 1
        ):
            connection = connect(self.registry, text)
            assert connection.refusal is not None
            self.assertEqual(connection.refusal.reason, "malformed_uuid")
            self.assertEqual(self.registry.counters.refusals["malformed_uuid"], n)
        self.assertEqual(self.registry.live_pairs(), [])

    def test_uppercase_uuid_refused(self) -> None:
        """The registry takes only the canonical lowercase form the protocol sends."""
        connection = connect(self.registry, new_uuid().upper())
        self.assertRefused(connection, "malformed_uuid")

    def test_uuid_mismatch_refused(self) -> None:
        """A connection that announced another UUID is refused."""
        connection = FakeConnection(new_uuid(2))
        with self.assertRaises(CallRefused) as caught:
            self.registry.bind(new_uuid(1), connection)
        self.assertEqual(caught.exception.reason, "uuid_mismatch")
        self.assertEqual(self.registry.live_pairs(), [])

    def test_connection_bound_twice_refused(self) -> None:
        """One connection never belongs to two pairs."""
        connection = connect(self.registry, new_uuid(1))
        connection.call_uuid = new_uuid(2)
        with self.assertRaises(CallRefused) as caught:
            self.registry.bind(new_uuid(2), connection)
        self.assertEqual(caught.exception.reason, "connection_already_bound")
        self.assertEqual(len(self.registry), 1)

    def test_not_running_refused(self) -> None:
        """A registry that was never started binds nothing."""
        registry = SessionRegistry(self.clock)
        with self.assertRaises(CallRefused) as caught:
            registry.bind(new_uuid(), FakeConnection(new_uuid()))
        self.assertEqual(caught.exception.reason, "not_running")
        self.assertEqual(registry.counters.refusals["not_running"], 1)

    def test_shutting_down_refused(self) -> None:
        """Once stopping, the registry refuses new connections."""
        self.registry.stopService()
        self.assertRefused(connect(self.registry, new_uuid()), "shutting_down")

    def test_damaged_context_refused(self) -> None:
        """A context damaged behind the validators' back stops the handover."""
        call = new_uuid()
        pair = self.pair_of(call)
        self.registry.expect_resident(call, 30)
        object.__setattr__(pair.context, "apartment", "12 B; DROP TABLE")
        self.assertRefused(connect(self.registry, call), "context_invalid")
        self.assertEqual(pair.outcome, Outcome.FAILED)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_refusal_is_a_warning_naming_uuid_and_reason(self) -> None:
        """Each refusal logs a warning with the UUID, the reason and the peer."""
        call = new_uuid()
        self.pair_of(call)
        connection = connect(self.registry, call)
        event = self.events[-1]
        self.assertEqual(event["log_level"].name, "warn")
        self.assertEqual(event["call_uuid"], call)
        self.assertEqual(event["reason"], "duplicate_visitor")
        self.assertEqual(event["peer"], connection.peer)
        self.assertEqual(event["state"], "visitor")


class GraceAndDeadlineTests(RegistryTestCase):
    def test_visitor_grace_expiry(self) -> None:
        """A visitor leg that does not come back ends the pair as visitor_lost."""
        call = new_uuid()
        pair = self.pair_of(call, resident=True)
        assert isinstance(pair.visitor.connection, FakeConnection)
        resident = pair.resident
        assert resident is not None and isinstance(resident.connection, FakeConnection)
        pair.visitor.connection.close(ConnectionLost)
        self.clock.advance(GRACE - 0.001)
        self.assertFalse(pair.ended)
        self.clock.advance(0.001)
        self.assertEqual(pair.outcome, Outcome.VISITOR_LOST)
        self.assertEqual(pair.visitor.state, LegState.CLOSED)
        self.assertEqual(resident.connection.hang_ups, 1)
        self.assertEqual(resident.state, LegState.HANGING_UP)
        resident.connection.close()
        self.assertEqual(resident.state, LegState.CLOSED)
        self.assertEqual(
            self.listeners[call].events[-1], ("ended", Outcome.VISITOR_LOST)
        )
        self.assertIdle()

    def test_resident_grace_expiry(self) -> None:
        """A resident leg that does not come back ends the pair as resident_lost."""
        pair = self.pair_of(new_uuid(), resident=True)
        assert pair.resident is not None
        assert isinstance(pair.resident.connection, FakeConnection)
        pair.resident.connection.close()
        self.clock.advance(GRACE)
        self.assertEqual(pair.outcome, Outcome.RESIDENT_LOST)
        assert isinstance(pair.visitor.connection, FakeConnection)
        self.assertEqual(pair.visitor.connection.hang_ups, 1)

    def test_zero_grace_ends_at_once(self) -> None:
        """With no grace period a drop ends the pair immediately, with no timer."""
        self.registry = self.make_registry(grace_period=0)
        pair = self.pair_of(new_uuid())
        assert isinstance(pair.visitor.connection, FakeConnection)
        pair.visitor.connection.close()
        self.assertEqual(pair.outcome, Outcome.VISITOR_LOST)
        self.assertIdle()

    def test_drop_counted_by_role_state_and_phase(self) -> None:
        """Drops are counted by role, pair state and the flow's phase."""
        pair = self.pair_of(new_uuid())
        pair.context.enter_phase("apartment", 1.0)
        assert isinstance(pair.visitor.connection, FakeConnection)
        pair.visitor.connection.close()
        self.assertEqual(
            dict(self.registry.counters.drops), {("visitor", "visitor", "apartment"): 1}
        )

    def test_deadline_ends_resident_unreachable(self) -> None:
        """An unmet expectation ends the pair as resident_unreachable."""
        call = new_uuid()
        pair = self.pair_of(call)
        self.registry.expect_resident(call, 45)
        self.clock.advance(44.9)
        self.assertFalse(pair.ended)
        self.clock.advance(0.1)
        self.assertEqual(pair.outcome, Outcome.RESIDENT_UNREACHABLE)
        (attempt,) = pair.context.resident_attempts
        self.assertEqual(attempt.result, AttemptResult.UNREACHABLE)
        self.assertEqual(attempt.resolved_at, 45)
        assert isinstance(pair.visitor.connection, FakeConnection)
        self.assertEqual(pair.visitor.connection.hang_ups, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_new_attempt_replaces_the_deadline(self) -> None:
        """Expecting again (a second number to try) restarts the deadline."""
        call = new_uuid()
        pair = self.pair_of(call)
        self.registry.expect_resident(call, 30, target="PJSIP/101")
        self.clock.advance(20)
        self.registry.expect_resident(call, 30, target="PJSIP/concierge")
        self.clock.advance(20)
        self.assertFalse(pair.ended)
        first, second = pair.context.resident_attempts
        self.assertEqual(first.result, AttemptResult.WITHDRAWN)
        self.assertIsNone(second.result)
        self.assertEqual(second.number, 2)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(10)
        self.assertEqual(pair.outcome, Outcome.RESIDENT_UNREACHABLE)

    def test_expect_resident_errors(self) -> None:
        """expect_resident refuses bad input, unknown calls and a second resident."""
        call = new_uuid()
        self.assertRaises(InvalidCallUUID, self.registry.expect_resident, "x", 30)
        self.assertRaises(UnknownCallError, self.registry.expect_resident, call, 30)
        self.pair_of(call, resident=True)
        for deadline in (0, -1, float("inf"), float("nan")):
            self.assertRaises(ValueError, self.registry.expect_resident, call, deadline)
        self.assertRaises(
            ResidentAlreadyBoundError, self.registry.expect_resident, call, 30
        )

    def test_expect_resident_accepts_uppercase(self) -> None:
        """The dialer's UUID is canonicalised at the boundary, not rejected."""
        call = new_uuid()
        pair = self.pair_of(call)
        self.registry.expect_resident(call.upper(), 30)
        self.assertTrue(pair.expecting_resident)

    def test_withdraw_without_expectation(self) -> None:
        """Withdrawing when nothing is expected says so and changes nothing."""
        call = new_uuid()
        self.pair_of(call)
        self.assertFalse(self.registry.withdraw_resident(call))
        self.assertFalse(self.registry.withdraw_resident(new_uuid(9)))

    def test_ended_uuids_are_forgotten(self) -> None:
        """After remember_ended seconds a UUID may start a new visit again."""
        self.registry = self.make_registry(remember_ended=60)
        call = new_uuid()
        self.pair_of(call)
        self.registry.end(call, Outcome.ALLOWED)
        self.clock.advance(59)
        self.assertRefused(connect(self.registry, call), "call_ended")
        self.clock.advance(1)
        fresh = connect(self.registry, call)
        self.assertIsNone(fresh.refusal)
        self.assertEqual(self.registry._ended, {})


class ReleaseTests(RegistryTestCase):
    def test_release_live_resident_then_call_another(self) -> None:
        """A released resident leg is hung up and a second resident may join."""
        call = new_uuid()
        pair = self.pair_of(call, resident=True)
        first = pair.resident
        assert first is not None and isinstance(first.connection, FakeConnection)
        connection = first.connection
        self.assertTrue(self.registry.release_resident(call))
        self.assertEqual(connection.hang_ups, 1)
        self.assertIsNone(pair.resident)
        self.assertEqual(pair.state, PairState.VISITOR)
        self.registry.expect_resident(call, 30, target="PJSIP/concierge")
        second = connect(self.registry, call)
        self.assertIs(second.receiver, pair.resident)
        self.assertIsNot(pair.resident, first)
        connection.close()
        self.assertEqual(first.state, LegState.CLOSED)
        self.assertEqual(pair.state, PairState.CONNECTED)
        self.assertEqual(self.registry.counters.residents_released, 1)

    def test_release_dropped_resident(self) -> None:
        """A dropped resident leg, released, is no longer waited for."""
        call = new_uuid()
        pair = self.pair_of(call, resident=True)
        resident = pair.resident
        assert resident is not None and isinstance(resident.connection, FakeConnection)
        resident.connection.close()
        self.assertTrue(self.registry.release_resident(call))
        self.assertEqual(resident.state, LegState.CLOSED)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(GRACE * 2)
        self.assertFalse(pair.ended)

    def test_released_resident_cannot_come_back(self) -> None:
        """After a release, a connection nobody expects is refused."""
        call = new_uuid()
        self.pair_of(call, resident=True)
        self.registry.release_resident(call)
        self.assertRefused(connect(self.registry, call), "resident_not_expected")

    def test_release_without_resident(self) -> None:
        """Releasing when there is no resident leg says so."""
        call = new_uuid()
        self.pair_of(call)
        self.assertFalse(self.registry.release_resident(call))
        self.assertFalse(self.registry.release_resident(new_uuid(7)))

    def test_release_of_the_last_leg_fails_the_pair(self) -> None:
        """Releasing the resident when the visitor is gone ends the pair."""
        call = new_uuid()
        pair = self.pair_of(call, resident=True)
        pair.visitor.hang_up()
        self.assertFalse(pair.ended)
        self.registry.release_resident(call)
        self.assertEqual(pair.outcome, Outcome.FAILED)


class EndingTests(RegistryTestCase):
    def test_end_hangs_up_and_fires_each_waiter(self) -> None:
        """end() hangs up every live leg and fires each caller's own Deferred."""
        call = new_uuid()
        pair = self.pair_of(call, resident=True)
        first, second = self.registry.when_ended(call), pair.when_ended()
        self.assertIsNot(first, second)
        self.assertNoResult(first)
        self.assertTrue(self.registry.end(call, Outcome.ALLOWED))
        self.assertEqual(self.successResultOf(first), Outcome.ALLOWED)
        self.assertEqual(self.successResultOf(second), Outcome.ALLOWED)
        for leg in pair.legs:
            assert isinstance(leg.connection, FakeConnection)
            self.assertEqual(leg.connection.hang_ups, 1)
            self.assertEqual(leg.state, LegState.HANGING_UP)
        self.assertEqual(pair.state, PairState.ENDED)
        self.assertEqual(self.registry.counters.pairs_ended, {"allowed": 1})
        self.assertEqual(self.listeners[call].events[-1], ("ended", Outcome.ALLOWED))

    def test_first_outcome_stands(self) -> None:
        """A pair ends once: later end() calls return False and change nothing."""
        call = new_uuid()
        pair = self.pair_of(call)
        self.assertTrue(pair.end(Outcome.DENIED))
        self.assertFalse(self.registry.end(call, Outcome.ALLOWED))
        self.assertFalse(pair.end(Outcome.FAILED))
        self.assertEqual(pair.outcome, Outcome.DENIED)
        self.assertEqual(self.registry.counters.pairs_ended, {"denied": 1})
        ended = [e for e, _ in self.listeners[call].events if e == "ended"]
        self.assertEqual(ended, ["ended"])

    def test_end_rejects_a_non_outcome(self) -> None:
        """end() takes an Outcome, not a string that looks like one."""
        call = new_uuid()
        self.pair_of(call)
        self.assertRaises(TypeError, self.registry.end, call, "allowed")

    def test_when_ended_after_the_end(self) -> None:
        """when_ended() on a recently ended call fires at once with its outcome."""
        call = new_uuid()
        self.pair_of(call)
        self.registry.end(call, Outcome.BUSY)
        self.assertEqual(
            self.successResultOf(self.registry.when_ended(call)), Outcome.BUSY
        )

    def test_when_ended_unknown(self) -> None:
        """when_ended() on a UUID never seen fails with UnknownCallError."""
        self.failureResultOf(self.registry.when_ended(new_uuid()), UnknownCallError)

    def test_when_ended_cancel(self) -> None:
        """A cancelled when_ended() Deferred is forgotten; the others still fire."""
        call = new_uuid()
        pair = self.pair_of(call)
        cancelled, kept = pair.when_ended(), pair.when_ended()
        cancelled.cancel()
        self.failureResultOf(cancelled, CancelledError)
        pair.end(Outcome.NO_ANSWER)
        self.assertEqual(self.successResultOf(kept), Outcome.NO_ANSWER)

    def test_end_cancels_every_timer(self) -> None:
        """Ending a pair with a dropped leg and a pending deadline leaves no timer."""
        call = new_uuid()
        pair = self.pair_of(call)
        self.registry.expect_resident(call, 30)
        assert isinstance(pair.visitor.connection, FakeConnection)
        pair.visitor.connection.close()
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)
        self.registry.end(call, Outcome.VISITOR_LEFT)
        self.assertEqual(pair.visitor.state, LegState.CLOSED)
        self.assertEqual(
            pair.context.resident_attempts[0].result, AttemptResult.ABANDONED
        )
        self.assertIdle()

    def test_end_unknown(self) -> None:
        """end() on an unknown UUID returns False."""
        self.assertFalse(self.registry.end(new_uuid(), Outcome.FAILED))

    def test_listener_ends_pair_on_drop(self) -> None:
        """A flow that knows the call was done ends the pair when a leg drops."""

        @implementer(IPairListener)
        class EndsOnDrop(RecordingListener):
            def leg_dropped(self, leg: Leg) -> None:
                self.pair.end(Outcome.VISITOR_LEFT)

        self.registry = SessionRegistry(self.clock, listener_factory=EndsOnDrop)
        self.registry.startService()
        pair = self.pair_of(new_uuid())
        assert isinstance(pair.visitor.connection, FakeConnection)
        pair.visitor.connection.close()
        self.assertEqual(pair.outcome, Outcome.VISITOR_LEFT)
        self.assertIdle()

    def test_everything_ended_leaves_nothing(self) -> None:
        """After every call ends and its connections close, nothing is held."""
        pairs = [self.pair_of(new_uuid(n), resident=n % 2 == 0) for n in range(6)]
        for pair in pairs:
            pair.end(Outcome.ALLOWED)
            for leg in pair.legs:
                assert isinstance(leg.connection, FakeConnection)
                leg.connection.close()
        self.assertIdle()
        self.assertEqual(self.registry._closing, set())


class FrameTests(RegistryTestCase):
    def test_frames_reach_the_listener_with_their_leg(self) -> None:
        """Audio and DTMF go to the pair's listener, naming the leg they came on."""
        call = new_uuid()
        pair = self.pair_of(call, resident=True)
        assert pair.resident is not None
        pair.visitor.dtmf_received("4")
        pair.resident.audio_received(Kind.SLIN, b"\x01\x00")
        self.assertEqual(
            self.listeners[call].events[-2:],
            [
                ("dtmf", (Role.VISITOR, "4")),
                ("audio", (Role.RESIDENT, Kind.SLIN, b"\x01\x00")),
            ],
        )

    def test_kind_is_learned_from_audio(self) -> None:
        """A leg takes its kind from the audio it receives and sends back at it."""
        pair = self.pair_of(new_uuid())
        visitor = pair.visitor
        self.assertEqual((visitor.kind, visitor.sample_rate), (Kind.SLIN, 8000))
        visitor.audio_received(Kind.SLIN16, b"\x00" * 640)
        self.assertEqual((visitor.kind, visitor.sample_rate), (Kind.SLIN16, 16000))
        visitor.send_audio(b"\x00" * 640)
        assert isinstance(visitor.connection, FakeConnection)
        self.assertEqual(visitor.connection.sent, [(Kind.SLIN16, b"\x00" * 640)])

    def test_listener_failure_ends_only_its_pair(self) -> None:
        """A listener that raises on a frame ends its own pair as failed, no other."""
        self.registry = self.make_registry()
        call, other = new_uuid(1), new_uuid(2)
        pair = self.pair_of(call)
        self.pair_of(other)
        self.listeners[call].raise_on = "dtmf"
        pair.visitor.dtmf_received("1")
        self.assertEqual(pair.outcome, Outcome.FAILED)
        failures = [e["log_failure"] for e in self.events if "log_failure" in e]
        self.assertEqual([f.type for f in failures], [RuntimeError])
        self.assertEqual([p.call_uuid for p in self.registry.live_pairs()], [other])

    def test_listener_factory_failure(self) -> None:
        """A factory that raises ends the new pair as failed and hangs it up."""

        def broken(pair: CallPair) -> IPairListener:
            raise RuntimeError("no flow today")

        registry = SessionRegistry(self.clock, listener_factory=broken)
        registry.startService()
        connection = connect(registry, new_uuid())
        self.assertEqual(connection.hang_ups, 1)
        self.assertEqual(registry.counters.pairs_ended, {"failed": 1})
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_leg_hang_up_is_not_a_drop(self) -> None:
        """A leg the flow hangs up closes without grace; the pair carries on."""
        call = new_uuid()
        pair = self.pair_of(call, resident=True)
        resident = pair.resident
        assert resident is not None and isinstance(resident.connection, FakeConnection)
        connection = resident.connection
        resident.hang_up()
        self.assertEqual(connection.hang_ups, 1)
        connection.close()
        self.assertEqual(resident.state, LegState.CLOSED)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertFalse(pair.ended)
        self.assertNotIn(("dropped", Role.RESIDENT), self.listeners[call].events)
        self.assertRefused(connect(self.registry, call), "third_leg")

    def test_hanging_up_the_last_leg_fails_the_pair(self) -> None:
        """Hanging up the last leg without an outcome ends the pair as failed."""
        pair = self.pair_of(new_uuid())
        pair.visitor.hang_up()
        self.assertEqual(pair.outcome, Outcome.FAILED)


class LoggingTests(RegistryTestCase):
    def test_every_event_names_call_leg_and_state(self) -> None:
        """Each log event of a call carries call_uuid, leg and state as fields."""
        call = new_uuid()
        pair = self.pair_of(call, resident=True)
        assert pair.resident is not None
        assert isinstance(pair.resident.connection, FakeConnection)
        pair.resident.connection.close()
        connect(self.registry, call)
        connect(self.registry, call)
        self.registry.end(call, Outcome.ALLOWED)
        self.assertGreaterEqual(len(self.events), 6)
        for event in self.events:
            self.assertEqual(event["call_uuid"], call, event["log_format"])
            self.assertIn("leg", event)
            self.assertIn("state", event)
        legs = {event["leg"] for event in self.events}
        self.assertLessEqual({"visitor", "resident"}, legs)


class AnnouncementTests(RegistryTestCase):
    def test_announcement_before_the_connection(self) -> None:
        """The gate's AMI event, arriving first, lands in the new pair's context."""
        call = new_uuid()
        self.registry.announce_visit(call, "north", "PJSIP/gate-00000001")
        pair = self.pair_of(call)
        self.assertEqual(pair.context.gate, "north")
        self.assertEqual(pair.context.visitor_channel, "PJSIP/gate-00000001")
        self.assertEqual(self.registry._announced, {})

    def test_announcement_after_the_connection(self) -> None:
        """The gate's AMI event, arriving second, updates the live pair."""
        call = new_uuid()
        pair = self.pair_of(call)
        self.registry.announce_visit(call.upper(), "north", "PJSIP/gate-00000001")
        self.assertEqual(pair.context.gate, "north")

    def test_stale_announcement_is_dropped(self) -> None:
        """An announcement whose connection never came is forgotten."""
        call = new_uuid()
        self.registry.announce_visit(call, "north", "PJSIP/gate-1")
        self.clock.advance(31)
        pair = self.pair_of(call)
        self.assertIsNone(pair.context.gate)
        self.registry.announce_visit(new_uuid(2), "north", "PJSIP/gate-2")
        self.clock.advance(31)
        self.registry.announce_visit(new_uuid(3), "north", "PJSIP/gate-3")
        self.assertEqual(list(self.registry._announced), [new_uuid(3)])

    def test_bad_announcement(self) -> None:
        """A channel name with whitespace or a malformed UUID fails at once."""
        self.assertRaises(
            ValueError, self.registry.announce_visit, new_uuid(), "north", "a b"
        )
        self.assertRaises(
            InvalidCallUUID, self.registry.announce_visit, "nope", "north", "PJSIP/x"
        )


class ServiceTests(RegistryTestCase):
    def test_stop_hangs_up_and_waits(self) -> None:
        """stopService hangs up every live leg and waits until they close."""
        pairs = [self.pair_of(new_uuid(n), resident=True) for n in range(3)]
        done = self.registry.stopService()
        self.assertNoResult(done)
        connections = [leg.connection for pair in pairs for leg in pair.legs]
        for connection in connections:
            assert isinstance(connection, FakeConnection)
            self.assertEqual(connection.hang_ups, 1)
        for pair in pairs:
            self.assertEqual(pair.outcome, Outcome.SHUTDOWN)
        for connection in connections[:-1]:
            connection.close()
        self.assertNoResult(done)
        connections[-1].close()
        self.successResultOf(done)
        self.assertIdle()

    def test_stop_wait_is_bounded(self) -> None:
        """stopService gives up waiting after stop_timeout seconds."""
        self.registry = self.make_registry(stop_timeout=2.0)
        pair = self.pair_of(new_uuid())
        done = self.registry.stopService()
        self.clock.advance(1.9)
        self.assertNoResult(done)
        self.clock.advance(0.1)
        self.successResultOf(done)
        self.assertIdle()
        # A close that comes late changes nothing.
        assert isinstance(pair.visitor.connection, FakeConnection)
        pair.visitor.connection.close()
        self.assertEqual(pair.visitor.state, LegState.CLOSED)

    def test_stop_with_nothing_live(self) -> None:
        """Stopping an idle registry finishes at once; a dropped leg needs no wait."""
        pair = self.pair_of(new_uuid())
        assert isinstance(pair.visitor.connection, FakeConnection)
        pair.visitor.connection.close()
        self.successResultOf(self.registry.stopService())
        self.assertEqual(pair.outcome, Outcome.SHUTDOWN)
        self.assertIdle()

    def test_connections_that_close_at_once(self) -> None:
        """A transport that closes inside hang_up() is handled, in end and in stop."""

        class Abrupt(FakeConnection):
            def hang_up(self) -> None:
                super().hang_up()
                self.close()

        def connect_abrupt(call: str) -> Abrupt:
            connection = Abrupt(call)
            connection.receiver = self.registry.bind(call, connection)
            return connection

        ended = connect_abrupt(new_uuid(1))
        self.registry.end(new_uuid(1), Outcome.DENIED)
        self.assertFalse(ended.connected)
        connect_abrupt(new_uuid(2))
        self.successResultOf(self.registry.stopService())
        self.assertIdle()
        self.assertEqual(self.registry._closing, set())

    def test_restart(self) -> None:
        """A stopped registry started again binds again."""
        self.registry.stopService()
        self.registry.startService()
        self.assertIsNone(connect(self.registry, new_uuid()).refusal)
