"""
Only the called resident decides: legs that nobody asked for are refused
and hear nothing, and a resident's keys reach only its own visit.

The attacker's connection is a real :class:`AudioSocketProtocol` bound to
the rig's registry, so what it receives is exactly what its socket would.
"""

from __future__ import annotations

from pathlib import Path

from attrs import evolve
from twisted.trial.unittest import SynchronousTestCase

from gatekeeper.audiosocket.wire import Kind, encode, encode_hangup
from gatekeeper.dialer.interfaces import Outcome as DialOutcome
from tests.flow.rig import Rig

from .support import (
    CALL,
    CALL_B,
    Line,
    ManyCallsDialer,
    connect,
    dtmf,
    to_resident,
    uuid_frame,
)

ATTACK = uuid_frame(CALL) + dtmf("1") + encode(Kind.SLIN, b"\x00\x10" * 160) + dtmf("1")


class UnsolicitedResidentTests(SynchronousTestCase):
    """A leg with a live visit's UUID that nobody originated is refused."""

    def setUp(self) -> None:
        self.rig = Rig(Path(self.mktemp() + "-residents.csv"))
        self.attackers: list[Line] = []

    def attack(self) -> Line:
        """Connect with the visit's UUID and press 1 at once, as an intruder would."""
        line = Line(self.rig, port=7000 + len(self.attackers))
        self.attackers.append(line)
        line.send(ATTACK)
        return line

    def assertShutOut(self) -> None:
        """Every attacker got the hang-up frame and not one byte more."""
        for line in self.attackers:
            self.assertEqual(line.transport.value(), encode_hangup())
            self.assertFalse(line.protocol.connected)

    def finish(self) -> None:
        self.rig.run(3)
        self.assertEqual(len(self.rig.registry), 0)
        self.assertEqual(self.rig.clock.getDelayedCalls(), [])

    def test_refused_in_every_phase(self) -> None:
        """Before the call, and beside the answered resident: refused, no say, no sound."""
        rig = self.rig
        visitor = rig.connect()
        rig.run(0.3)
        self.attack()  # the greeting is playing
        visitor.press("101#")
        rig.run(0.5)
        self.attack()  # "say your name"
        rig.speak(visitor)
        self.assertEqual(rig.dialer.rung, ["1011"])
        rig.dialer.answer("1011")
        resident = rig.connect("127.0.0.1:2")
        rig.run(1.0)
        self.attack()  # the resident hears the announcement
        rig.run(1.5)
        resident.press("3")
        rig.run(0.5)
        self.attack()  # visitor and resident are talking
        rig.run(2.0)
        self.assertEqual(rig.door.opened, [])
        resident.press("2")
        rig.run(1)
        self.finish()
        self.assertShutOut()
        refusals = rig.registry.counters.refusals
        self.assertEqual(refusals["duplicate_visitor"], 2)
        self.assertEqual(refusals["third_leg"], 2)
        self.assertEqual(rig.door.opened, [])
        (record,) = rig.log.records
        self.assertEqual(record.outcome, "denied")

    def test_refused_after_a_failed_call(self) -> None:
        """Once every resident call failed, a late 'resident' leg is refused."""
        rig = self.rig
        to_resident(rig, CALL, "101", 1)
        rig.dialer.answer("1011", DialOutcome.BUSY)
        rig.dialer.answer("1012", DialOutcome.NO_ANSWER)
        rig.run(0.1)
        rig.dialer.answer("9000", DialOutcome.BUSY)
        rig.run(0.1)
        self.attack()
        self.finish()
        self.assertShutOut()
        self.assertEqual(rig.registry.counters.refusals["resident_not_expected"], 1)
        self.assertEqual(rig.door.opened, [])
        self.assertEqual(rig.log.records[0].outcome, "busy")

    def test_refused_after_the_visit(self) -> None:
        """A leg for a visit that just ended starts nothing and opens nothing."""
        rig = self.rig
        visitor = rig.connect()
        rig.run(0.3)
        visitor.close()
        rig.run(11)
        self.assertEqual(len(rig.registry), 0)
        self.attack()
        self.finish()
        self.assertShutOut()
        self.assertEqual(rig.registry.counters.refusals["call_ended"], 1)
        self.assertEqual(rig.registry.counters.pairs_started, 1)


class OtherPairTests(SynchronousTestCase):
    """Two visits at once: each resident's keys touch only its own."""

    def setUp(self) -> None:
        self.rig = Rig(Path(self.mktemp() + "-residents.csv"))
        # The rig's dialer answers for one visit only; this one for any.
        self.rig.dialer = ManyCallsDialer()
        self.rig.services = evolve(self.rig.services, dialer=self.rig.dialer)
        self.rig.conversations.services = self.rig.services

    def two_visits(self) -> tuple[object, object]:
        rig = self.rig
        to_resident(rig, CALL, "101", 1)
        to_resident(rig, CALL_B, "202", 2)
        self.assertEqual(rig.dialer.rung, ["1011", "2021"])
        rig.dialer.answer("1011")
        rig.dialer.answer("2021")
        resident_a = connect(rig, CALL, "127.0.0.1:11")
        resident_b = connect(rig, CALL_B, "127.0.0.1:12")
        rig.run(2.5)
        return resident_a, resident_b

    def phase(self, call_uuid: str) -> str:
        return str(self.rig.conversations.live[call_uuid].machine.phase)

    def test_keys_stay_in_their_pair(self) -> None:
        """A's resident denies; B still decides, and B's resident opens B's door."""
        rig = self.rig
        resident_a, resident_b = self.two_visits()
        self.assertEqual(
            (self.phase(CALL), self.phase(CALL_B)), ("deciding", "deciding")
        )
        resident_a.press("2")  # type: ignore[attr-defined]
        rig.run(0.5)
        self.assertEqual(self.phase(CALL_B), "deciding")
        self.assertEqual(rig.door.opened, [])
        resident_a.press("1")  # type: ignore[attr-defined]  # too late, and not B's
        rig.run(0.5)
        self.assertEqual(rig.door.opened, [])
        self.assertEqual(self.phase(CALL_B), "deciding")
        resident_b.press("1")  # type: ignore[attr-defined]
        rig.run(3)
        self.assertEqual(rig.door.opened, [(CALL_B, "202")])
        outcomes = {r.call_uuid: r.outcome for r in rig.log.records}
        self.assertEqual(outcomes, {CALL: "denied", CALL_B: "allowed"})
        self.assertEqual(len(rig.registry), 0)
        self.assertEqual(rig.clock.getDelayedCalls(), [])

    def test_second_uuid_frame_cannot_switch_pairs(self) -> None:
        """A resident's connection that announces the other visit's UUID is cut off."""
        rig = self.rig
        to_resident(rig, CALL, "101", 1)
        to_resident(rig, CALL_B, "202", 2)
        rig.dialer.answer("1011")
        line = Line(rig)
        line.send(uuid_frame(CALL))  # the expected resident of A
        rig.run(0.5)
        line.send(uuid_frame(CALL_B) + dtmf("1"))
        self.assertFalse(line.protocol.connected)
        self.assertEqual(line.factory.protocol_errors, 1)
        self.assertEqual(self.phase(CALL_B), "calling")
        pair_b = rig.registry.get(CALL_B)
        assert pair_b is not None
        self.assertIsNone(pair_b.resident)
        rig.run(1)
        self.assertEqual(rig.door.opened, [])
