"""
The visitor's keys choose an apartment and nothing else: they never open
the door, whatever phase the visit is in and however the resident ends it.

Whole visits run in the rig with the visitor pressing 1, 2 and 3 all along;
the pure machine is also driven by hypothesis through arbitrary event
sequences in which only the visitor presses keys.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from gatekeeper.flow import machine as m
from tests.flow.rig import CALL, FakeConnection, Rig

KEYS = "123"
T = np.arange(160) / 8000
QUIET = (np.sin(2 * np.pi * 200 * T) * 20).astype("<i2").tobytes()
VOICE = (np.sin(2 * np.pi * 700 * T) * 8000).astype("<i2").tobytes()


class VisitorKeysTests(SynchronousTestCase):
    """A whole visit with the visitor pressing 1/2/3 in every phase."""

    def setUp(self) -> None:
        self.rig = Rig(Path(self.mktemp() + "-residents.csv"))
        self.pressed = 0
        self.phases: set[str] = set()

    def mash(
        self, visitor: FakeConnection, seconds: float, voice: bool = False
    ) -> None:
        """Let time pass, the visitor pressing a key every 100 ms (and talking)."""
        rig = self.rig
        for tick in range(round(seconds / 0.02)):
            if visitor.connected and tick % 5 == 0:
                visitor.press(KEYS[self.pressed % 3])
                self.pressed += 1
            if visitor.connected and voice:
                visitor.send(VOICE if 15 <= tick < 65 else QUIET)
            conversation = rig.conversations.live.get(CALL)
            if conversation is not None:
                self.phases.add(str(conversation.machine.phase))
            rig.clock.advance(0.02)

    def reach_resident(self) -> tuple[FakeConnection, FakeConnection]:
        rig = self.rig
        visitor = rig.connect()
        self.mash(visitor, 0.3)  # 1, 2, 3 as apartment digits: apartment 123...
        visitor.press("*")  # ...which the visitor clears
        visitor.press("101#")
        self.mash(visitor, 0.5)  # "say your name", the beep
        self.mash(visitor, 3.0, voice=True)  # quiet, a name, quiet: recorded
        self.assertEqual(rig.dialer.rung, ["1011"])
        rig.dialer.answer("1011")
        resident = rig.connect("127.0.0.1:2")
        return visitor, resident

    def assertNeverOpened(self, outcome: str) -> None:
        rig = self.rig
        self.assertEqual(rig.door.opened, [])
        (record,) = rig.log.records
        self.assertEqual(record.outcome, outcome)
        self.assertEqual(len(rig.registry), 0)
        self.assertEqual(rig.clock.getDelayedCalls(), [])

    def test_resident_silent(self) -> None:
        """The resident never presses: the announcements run out, no door."""
        visitor, _ = self.reach_resident()
        self.mash(visitor, 40)
        self.assertNeverOpened("denied")
        self.assertGreaterEqual(
            self.phases, {"apartment", "recording", "calling", "deciding", "concluding"}
        )

    def test_resident_denies(self) -> None:
        """The resident presses 2 after the visitor pressed 1 throughout."""
        visitor, resident = self.reach_resident()
        self.mash(visitor, 4)
        resident.press("2")
        self.mash(visitor, 5)
        self.assertNeverOpened("denied")

    def test_talk_then_resident_denies(self) -> None:
        """Talking: the visitor's 1 is heard as a tone at most, never a decision."""
        visitor, resident = self.reach_resident()
        self.mash(visitor, 3)
        resident.press("3")
        self.mash(visitor, 5)
        self.assertIn("talking", self.phases)
        self.assertEqual(self.rig.door.opened, [])
        resident.press("2")
        self.mash(visitor, 5)
        self.assertNeverOpened("denied")

    def test_resident_hangs_up(self) -> None:
        """The resident leaves without a key: no door, whatever the visitor pressed."""
        visitor, resident = self.reach_resident()
        self.mash(visitor, 3)
        resident.close()
        self.mash(visitor, 20)
        self.assertEqual(self.rig.door.opened, [])
        self.assertEqual(len(self.rig.log.records), 1)
        self.assertNotEqual(self.rig.log.records[0].outcome, "allowed")

    def test_resident_allows_once(self) -> None:
        """When the resident allows, the door opens once, not once per visitor 1."""
        visitor, resident = self.reach_resident()
        self.mash(visitor, 3)
        resident.press("1")
        self.mash(visitor, 5)
        self.assertEqual(self.rig.door.opened, [(CALL, "101")])
        self.assertEqual(self.rig.log.records[0].outcome, "allowed")


# -- the pure machine, any order of events ------------------------------------

_visitor_digits = st.sampled_from("0123456789*#").map(
    lambda d: m.Digit(m.Role.VISITOR, d)
)
_events = st.one_of(
    _visitor_digits,
    _visitor_digits,
    _visitor_digits,
    st.just(m.VisitorArrived()),
    st.just(m.ResidentArrived()),
    st.builds(
        m.PlaybackFinished,
        st.sampled_from(m.Role),
        st.sampled_from(["ask", "say_name", "wait", "announce", "told"]),
    ),
    st.builds(m.TimerFired, st.sampled_from(["digits", "ring", "decision", "talk"])),
    st.builds(
        m.LookUpFinished,
        st.just("101"),
        st.sampled_from([None, ("1011",), ("1011", "9000")]),
    ),
    st.builds(m.RecordingFinished, st.sampled_from([None, "/tmp/name.wav"])),
    st.builds(
        m.DialFinished, st.sampled_from(["1011", "9000"]), st.sampled_from(m.DialResult)
    ),
    st.builds(m.LegDropped, st.sampled_from(m.Role)),
    st.builds(m.LegBack, st.sampled_from(m.Role)),
    st.builds(m.LegGoneForGood, st.sampled_from(m.Role)),
    st.builds(m.DoorFinished, st.booleans()),
    st.just(m.RecordWritten()),
)


# The way to the resident's decision: random events are slipped in between
# these steps, so the sequences reach every phase rather than dying early.
TO_DECISION: list[m.Event] = [
    m.VisitorArrived(),
    m.PlaybackFinished(m.Role.VISITOR, "ask"),
    *[m.Digit(m.Role.VISITOR, d) for d in "101#"],
    m.LookUpFinished("101", ("1011",)),
    m.PlaybackFinished(m.Role.VISITOR, "say_name"),
    m.RecordingFinished("/tmp/name.wav"),
    m.DialFinished("1011", m.DialResult.ANSWERED),
    m.ResidentArrived(),
    m.PlaybackFinished(m.Role.RESIDENT, "announce"),
]
_gaps = st.lists(
    st.lists(_events, max_size=5),
    min_size=len(TO_DECISION) + 1,
    max_size=len(TO_DECISION) + 1,
)


def _interleave(gaps: list[list[m.Event]]) -> list[m.Event]:
    events: list[m.Event] = []
    for step, gap in zip([*TO_DECISION, None], gaps, strict=True):
        events += gap
        if step is not None:
            events.append(step)
    return events


def _commands(events: list[m.Event]) -> list[m.Command]:
    machine = m.VisitMachine(m.FlowSettings())
    return [command for event in events for command in machine.handle(event)]


class MachineTests(SynchronousTestCase):
    """The rule holds in the machine itself, for any sequence of events."""

    def test_the_way_reaches_the_decision(self) -> None:
        """Control: the resident's 1 at the end of the way opens the door."""
        commands = _commands([*TO_DECISION, m.Digit(m.Role.RESIDENT, "1")])
        self.assertIn(m.OpenDoor(), commands)

    @settings(
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
        max_examples=400,
        database=None,
    )
    @given(_gaps)
    def test_visitor_keys_never_open(self, gaps: list[list[m.Event]]) -> None:
        """No sequence of events with only visitor keys yields OpenDoor or 'allowed'."""
        for command in _commands(_interleave(gaps)):
            self.assertNotIsInstance(command, m.OpenDoor)
            if isinstance(command, m.WriteRecord):
                self.assertNotEqual(command.outcome, m.ALLOWED)
