"""
A hypothesis state machine over the session registry.

It interleaves connections, drops, reconnections, expectations, withdrawals,
ends, frames, deliberate hang-ups, restarts and the passing of time over a
few UUIDs, predicts each bind from the rules in the registry's docstring, and
checks after every step that the registry holds one pair per UUID and one
pair per connection, that every timer it has scheduled belongs to a live
pair, and that every ended pair has exactly one outcome.  At the end it lets
every connection go and every timer run out, and the registry must be empty.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from gatekeeper.audiosocket.wire import Kind
from gatekeeper.session.callpair import CallPair, Leg, LegState, Outcome, PairState
from gatekeeper.session.registry import (
    ResidentAlreadyBoundError,
    SessionRegistry,
    UnknownCallError,
)
from tests.session.test_registry import (
    FakeConnection,
    RecordingListener,
    connect,
    new_uuid,
)

GRACE = 10.0
REMEMBER = 60.0
UUIDS = [new_uuid(n) for n in range(3)]
_CONNECTED = (LegState.LIVE, LegState.DROPPED)


class RegistryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.listeners: dict[int, RecordingListener] = {}
        self.registry = SessionRegistry(
            self.clock,
            grace_period=GRACE,
            listener_factory=self.listen,
            remember_ended=REMEMBER,
            stop_timeout=3.0,
        )
        self.log: list[dict[str, Any]] = []
        self.registry._log = Logger(observer=self.log.append)
        self.registry.startService()
        self.pairs: list[CallPair] = []
        self.outcomes: dict[int, list[Outcome]] = {}
        self.ended_at: dict[str, float] = {}
        self.connections: list[FakeConnection] = []
        self.released: list[Leg] = []
        self.stopping: Any = None

    def listen(self, pair: CallPair) -> RecordingListener:
        listener = RecordingListener(pair)
        self.listeners[id(pair)] = listener
        self.pairs.append(pair)
        self.outcomes[id(pair)] = []
        pair.when_ended().addCallback(self.ended, pair)
        return listener

    def ended(self, outcome: Outcome, pair: CallPair) -> None:
        self.outcomes[id(pair)].append(outcome)
        self.ended_at[pair.call_uuid] = self.clock.seconds()

    def open_connections(self) -> list[FakeConnection]:
        """Accepted connections that have not closed, not hung up by us."""
        return [c for c in self.connections if c.connected and not c.hang_ups]

    def hung_up(self) -> list[FakeConnection]:
        """Connections we sent a hang-up frame that the peer has not closed yet."""
        return [c for c in self.connections if c.connected and c.hang_ups]

    # -- rules -----------------------------------------------------------

    @rule(n=st.integers(0, len(UUIDS) - 1))
    def connect(self, n: int) -> None:
        call = UUIDS[n]
        pair = self.registry.get(call)
        snapshot = self.snapshot(pair)
        now = self.clock.seconds()
        if self.stopping is not None:
            expected: Any = "refused"
        elif pair is None:
            recent = call in self.ended_at and now - self.ended_at[call] < REMEMBER
            expected = "refused" if recent else "new"
        elif pair.expecting_resident:
            expected = "resident"
        elif pair.visitor.state is LegState.DROPPED:
            expected = pair.visitor
        elif pair.resident is not None and pair.resident.state is LegState.DROPPED:
            expected = pair.resident
        else:
            expected = "refused"
        started = len(self.pairs)
        connection = connect(self.registry, call)
        self.assertEqual(connection.hang_ups, 0)
        if connection.refusal is not None:
            assert expected == "refused", (expected, connection.refusal)
            assert self.snapshot(self.registry.get(call)) == snapshot
            assert len(self.pairs) == started
            return
        self.connections.append(connection)
        leg = connection.receiver
        assert isinstance(leg, Leg) and leg.pair is not None
        if expected == "new":
            assert len(self.pairs) == started + 1 and self.pairs[-1] is leg.pair
            assert leg is leg.pair.visitor
        elif expected == "resident":
            assert leg.pair is pair and leg is pair.resident
        else:
            assert leg is expected, (leg, expected)
        if not leg.pair.ended:
            assert leg.connection is connection

    @precondition(lambda self: self.open_connections())
    @rule(index=st.integers(0, 1000))
    def drop(self, index: int) -> None:
        connections = self.open_connections()
        connections[index % len(connections)].close(ConnectionLost)

    @precondition(lambda self: self.open_connections())
    @rule(index=st.integers(0, 1000))
    def reconnect(self, index: int) -> None:
        """Asterisk's dialplan retries AudioSocket() with the same UUID."""
        connections = self.open_connections()
        connection = connections[index % len(connections)]
        connection.close(ConnectionLost)
        self.connect(UUIDS.index(connection.call_uuid))

    @precondition(lambda self: self.hung_up())
    @rule(index=st.integers(0, 1000))
    def peer_closes(self, index: int) -> None:
        connections = self.hung_up()
        connections[index % len(connections)].close()

    @rule(n=st.integers(0, len(UUIDS) - 1), deadline=st.sampled_from([1.0, 5.0, 30.0]))
    def expect_resident(self, n: int, deadline: float) -> None:
        pair = self.registry.get(UUIDS[n])
        try:
            self.registry.expect_resident(UUIDS[n], deadline)
        except UnknownCallError:
            assert pair is None
        except ResidentAlreadyBoundError:
            assert pair is not None and pair.resident is not None
        else:
            assert pair is not None and pair.resident is None
            assert pair.state is PairState.CALLING

    @rule(n=st.integers(0, len(UUIDS) - 1))
    def release(self, n: int) -> None:
        pair = self.registry.get(UUIDS[n])
        resident = pair.resident if pair is not None else None
        assert self.registry.release_resident(UUIDS[n]) == (resident is not None)
        if resident is not None:
            assert pair is not None and pair.resident is None
            assert resident.state in (LegState.HANGING_UP, LegState.CLOSED)
            self.released.append(resident)

    @rule(n=st.integers(0, len(UUIDS) - 1))
    def withdraw(self, n: int) -> None:
        pair = self.registry.get(UUIDS[n])
        expecting = pair is not None and pair.expecting_resident
        assert self.registry.withdraw_resident(UUIDS[n]) == expecting

    @rule(seconds=st.sampled_from([0.5, 1.0, 4.0, GRACE - 0.5, GRACE, 31.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(n=st.integers(0, len(UUIDS) - 1), outcome=st.sampled_from(Outcome))
    def end(self, n: int, outcome: Outcome) -> None:
        pair = self.registry.get(UUIDS[n])
        assert self.registry.end(UUIDS[n], outcome) == (pair is not None)
        if pair is not None:
            assert pair.outcome is outcome

    @precondition(lambda self: self.open_connections())
    @rule(index=st.integers(0, 1000), dtmf=st.booleans())
    def frame(self, index: int, dtmf: bool) -> None:
        connections = self.open_connections()
        connection = connections[index % len(connections)]
        leg = connection.receiver
        assert isinstance(leg, Leg) and leg.pair is not None
        events = self.listeners[id(leg.pair)].events
        before = len(events)
        if dtmf:
            leg.dtmf_received("5")
        else:
            leg.audio_received(Kind.SLIN16, b"\x00\x00")
            assert leg.kind is Kind.SLIN16
        assert len(events) == before + (leg.state is LegState.LIVE)

    @precondition(lambda self: self.open_connections())
    @rule(index=st.integers(0, 1000), now=st.integers(0, 3))
    def flow_hangs_up_leg(self, index: int, now: int) -> None:
        if now:
            return  # one draw in four: rarer than a drop
        connections = self.open_connections()
        leg = connections[index % len(connections)].receiver
        assert isinstance(leg, Leg)
        leg.hang_up()

    @precondition(lambda self: self.stopping is None)
    @rule(now=st.integers(0, 7))
    def stop(self, now: int) -> None:
        if now:
            return  # one draw in eight, so most runs see calls carry on
        self.stopping = self.registry.stopService()
        assert self.registry.live_pairs() == []

    @precondition(lambda self: self.stopping is not None)
    @rule()
    def start(self) -> None:
        # twistd would wait; the machine lets time pass so the stop finishes.
        self.clock.advance(self.registry.stop_timeout)
        assert self.stopping.called
        self.stopping = None
        self.registry.startService()

    # -- invariants ------------------------------------------------------

    def snapshot(self, pair: CallPair | None) -> Any:
        if pair is None:
            return None
        return (
            pair.state,
            pair.outcome,
            pair.expecting_resident,
            [(leg.state, leg.connection, leg.attachments) for leg in pair.legs],
            len(self.listeners[id(pair)].events),
        )

    @invariant()
    def one_pair_per_uuid(self) -> None:
        live = [p for p in self.pairs if not p.ended]
        assert self.registry.live_pairs() == live
        assert len({p.call_uuid for p in live}) == len(live)
        for pair in live:
            assert self.registry.get(pair.call_uuid) is pair
            assert pair.state is not PairState.ENDED

    @invariant()
    def one_pair_per_connection(self) -> None:
        owners: dict[int, CallPair | None] = {}
        bound = set()
        legs = [(pair, leg) for pair in self.pairs for leg in pair.legs]
        legs += [(leg.pair, leg) for leg in self.released]
        for pair, leg in legs:
            assert leg.pair is pair
            connection = leg.connection
            if leg.state in (LegState.LIVE, LegState.HANGING_UP):
                assert connection is not None
                assert owners.setdefault(id(connection), pair) is pair
                bound.add(connection)
            else:
                assert connection is None or leg.state is LegState.CLOSED
        for leg in self.released:
            assert leg.state in (LegState.HANGING_UP, LegState.CLOSED)
        assert self.registry._bound == bound

    @invariant()
    def every_timer_belongs_to_a_live_pair(self) -> None:
        expected = []
        for pair in self.registry.live_pairs():
            if pair.expecting_resident:
                assert pair.resident is None and pair.state is PairState.CALLING
                expected.append(pair._deadline)
            for leg in pair.legs:
                if leg.state is LegState.DROPPED:
                    expected.append(leg._grace)
                else:
                    assert leg._grace is None
        if self.registry._stop_timer is not None:
            expected.append(self.registry._stop_timer)
        delayed = self.clock.getDelayedCalls()
        assert sorted(map(id, delayed)) == sorted(map(id, expected)), (
            delayed,
            expected,
        )

    @invariant()
    def one_outcome_per_ended_pair(self) -> None:
        for pair in self.pairs:
            fired = self.outcomes[id(pair)]
            told = [d for e, d in self.listeners[id(pair)].events if e == "ended"]
            if pair.ended:
                assert fired == [pair.outcome] and told == [pair.outcome]
                assert pair.state is PairState.ENDED
                assert all(leg.state not in _CONNECTED for leg in pair.legs)
            else:
                assert fired == [] and told == []
                assert pair.state is not PairState.ENDED
        counters = self.registry.counters
        assert counters.pairs_started == len(self.pairs)
        assert sum(counters.pairs_ended.values()) == sum(p.ended for p in self.pairs)

    @invariant()
    def live_pairs_have_someone(self) -> None:
        for pair in self.registry.live_pairs():
            assert pair.expecting_resident or any(
                leg.state in _CONNECTED for leg in pair.legs
            )

    def teardown(self) -> None:
        """Every connection goes, every timer runs out: nothing may remain."""
        for _ in range(10):
            for connection in self.connections:
                if connection.connected:
                    connection.close()
            if not self.clock.getDelayedCalls():
                break
            self.clock.advance(max(GRACE, 30.0, self.registry.stop_timeout))
        self.one_pair_per_connection()
        self.one_outcome_per_ended_pair()
        assert self.registry.live_pairs() == []
        assert len(self.registry) == 0
        assert self.clock.getDelayedCalls() == []
        assert self.registry._bound == set()
        assert self.registry._closing == set()
        assert all(pair.ended for pair in self.pairs)
        assert not [e for e in self.log if "log_failure" in e]

    @staticmethod
    def assertEqual(a: object, b: object) -> None:
        assert a == b, (a, b)


class RegistryStateMachineTests(SynchronousTestCase):
    def test_registry_state_machine(self) -> None:
        """Under any interleaving the registry keeps its invariants and ends empty."""
        run_state_machine_as_test(
            RegistryMachine,
            settings=settings(
                max_examples=600,
                stateful_step_count=40,
                deadline=None,
                derandomize=True,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
