"""
Whole visits over real TCP on 127.0.0.1: gatekeeper's service tree from
``makeService`` against the simulated Asterisk (AudioSocket legs and AMI).

Prompts are synthetic (each a short run of one constant sample value) so what
each leg heard reads back as prompt names; every visitor and resident speaks
with a signature voice, so ``name:<n>`` says whose voice a leg heard.
Timeouts are small so the whole file runs in seconds.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from gatekeeper.accesslog import VisitRecord
from gatekeeper.config import parse_config
from gatekeeper.testing.audio import BEEP, RINGBACK, write_synthetic_prompts
from gatekeeper.testing.harness import Building, start_building
from gatekeeper.testing.pbx import SimChannel, format_timeline, resident_channel
from gatekeeper.testing.script import (
    BUSY,
    Drop,
    HangUp,
    Phone,
    Press,
    Speak,
    Visitor,
    Wait,
    WaitFor,
)

FLOW = {
    "first_digit_timeout": 2,
    "inter_digit_timeout": 1,
    "ring_timeout": 1,
    "answer_timeout": 2,
    "decision_timeout": 2,
}
RECORDING = {"trailing_silence": 0.3, "no_speech_timeout": 2, "max_length": 3}
DOOR = {"mode": "command", "command": "true"}

VISITOR = 7
GREETING = ["greeting", "ask_apartment", "say_name", BEEP, "calling_resident"]
ANNOUNCEMENT = ["resident_intro", f"name:{VISITOR}", "resident_choice"]


def visitor(apartment: str = "101", *then: object) -> Visitor:
    """Presses ``apartment``, says their name after the beep, then ``then``."""
    return Visitor(
        (
            WaitFor("ask_apartment"),
            Press(apartment + "#", gap=0.05),
            WaitFor(BEEP, after=0.15),
            Speak(0.4, quiet_before=0.1, quiet_after=0.45),
            *then,  # type: ignore[arg-type]
        ),
        number=VISITOR,
    )


def answers(*steps: object, after: float = 0.1, voice: int = 0) -> Phone:
    return Phone(answer_after=after, steps=steps, voice=voice)  # type: ignore[arg-type]


NEVER = Phone(answer_after=None)


class _BuildingTestCase(TestCase):
    """Prompts and a recordings folder for the buildings a test starts."""

    timeout = 30

    def setUp(self) -> None:
        self.base = Path(self.mktemp())
        self.prompts = write_synthetic_prompts(self.base / "prompts", 0.12)
        # Short: gatekeeper refuses a recording path over 128 characters.
        self.recordings = Path(tempfile.mkdtemp(prefix="gk-e2e-"))
        self.addCleanup(shutil.rmtree, self.recordings, ignore_errors=True)


class VisitTests(_BuildingTestCase):
    """One visit per outcome, from the gate to the access log."""

    async def building(self, phones: dict[str, Phone], **kwargs: object) -> Building:
        building = await start_building(
            self.base / "building",
            reactor,
            phones=phones,
            prompts=self.prompts,
            flow=FLOW,
            recording={**RECORDING, "directory": self.recordings},
            session={"grace_period": 3},
            door=DOOR,
            **kwargs,  # type: ignore[arg-type]
        )
        self.addCleanup(lambda: Deferred.fromCoroutine(building.stop()))
        self.addCleanup(self._explain, building)
        return building

    def _explain(self, building: Building) -> None:
        """On failure, the timeline says what happened (printed, not asserted)."""
        if os.environ.get("GK_E2E_TIMELINE"):
            print(f"\n{self.id()}\n{format_timeline(building.pbx)}")

    async def visit(
        self, building: Building, script: Visitor
    ) -> tuple[SimChannel, VisitRecord]:
        """Run a visit to its end; its channel and its access-log row."""
        channel = building.pbx.visit(script)
        await channel.when_gone()
        record = None
        for _ in range(100):
            if len(building.registry) == 0:
                record = await building.record(channel.call_uuid)
                if record is not None:
                    break
            await deferLater(reactor, 0.05, lambda: None)
        self.assertIsNotNone(record, "no access-log row")
        assert record is not None
        return channel, record

    def assertHeard(self, channel: SimChannel | None, expected: list[str]) -> None:
        assert channel is not None
        self.assertEqual(channel.heard_names(), expected)

    async def test_allow(self) -> None:
        """The resident presses 1: the door opens, the row says allowed, and
        both are told."""
        building = await self.building(
            {"1011": answers(WaitFor("resident_choice"), Press("1"))}
        )
        channel, record = await self.visit(building, visitor())
        self.assertHeard(channel, [*GREETING, RINGBACK, "access_granted", "goodbye"])
        self.assertHeard(
            resident_channel(building.pbx, "1011"), [*ANNOUNCEMENT, "access_granted"]
        )
        self.assertEqual(
            (record.outcome, record.apartment, record.gate, record.extensions_tried),
            ("allowed", "101", "main", ("1011",)),
        )
        self.assertEqual(record.door_result, "opened")
        self.assertTrue(record.recording_path.endswith(f"{channel.call_uuid}.wav"))

    async def test_deny(self) -> None:
        """The resident presses 2: no door, the visitor is told no."""
        building = await self.building(
            {"1011": answers(WaitFor("resident_choice"), Press("2"))}
        )
        channel, record = await self.visit(building, visitor())
        self.assertHeard(channel, [*GREETING, RINGBACK, "access_denied", "goodbye"])
        self.assertHeard(
            resident_channel(building.pbx, "1011"), [*ANNOUNCEMENT, "access_denied"]
        )
        self.assertEqual(building.pbx.dtmf_played, [])
        self.assertEqual(
            (record.outcome, record.door_result), ("denied", "not_attempted")
        )

    async def test_talk_then_allow(self) -> None:
        """3 bridges the legs (each hears the other's voice), then 1 opens."""
        building = await self.building(
            {
                "1011": answers(
                    WaitFor("resident_choice"),
                    Press("3"),
                    Speak(0.4, quiet_after=0.1),
                    WaitFor(f"name:{VISITOR}"),
                    Wait(0.3),
                    Press("1"),
                    voice=42,
                )
            }
        )
        channel, record = await self.visit(
            building, visitor("101", WaitFor("name:42"), Speak(0.4, quiet_after=0.1))
        )
        self.assertHeard(
            channel, [*GREETING, RINGBACK, "name:42", "access_granted", "goodbye"]
        )
        self.assertHeard(
            resident_channel(building.pbx, "1011"),
            [*ANNOUNCEMENT, f"name:{VISITOR}", "access_granted"],
        )
        self.assertEqual((record.outcome, record.door_result), ("allowed", "opened"))

    async def test_no_answer(self) -> None:
        """Nobody answers: every extension and the concierge ring out."""
        building = await self.building({"2021": NEVER, "9000": NEVER})
        channel, record = await self.visit(building, visitor("202"))
        self.assertHeard(
            channel, [*GREETING, RINGBACK, "resident_not_answering", "goodbye"]
        )
        self.assertEqual(
            (record.outcome, record.extensions_tried), ("no_answer", ("2021", "9000"))
        )
        rung = [c for c in building.pbx.channels if c.label.startswith("resident")]
        self.assertEqual([c.label for c in rung], ["resident 2021", "resident 9000"])
        self.assertTrue(all(c.heard_names() == [] for c in rung))

    async def test_busy(self) -> None:
        """Every extension is busy: the visit ends as busy."""
        busy = Phone(reason=BUSY, answer_after=0.05)
        building = await self.building({"2021": busy, "9000": busy})
        channel, record = await self.visit(building, visitor("202"))
        self.assertHeard(channel, [*GREETING, "resident_not_answering", "goodbye"])
        self.assertEqual(
            (record.outcome, record.extensions_tried), ("busy", ("2021", "9000"))
        )

    async def test_concierge_fallback(self) -> None:
        """The resident does not answer; the concierge does and lets them in."""
        building = await self.building(
            {"2021": NEVER, "9000": answers(WaitFor("resident_choice"), Press("1"))}
        )
        channel, record = await self.visit(building, visitor("202"))
        self.assertHeard(channel, [*GREETING, RINGBACK, "access_granted", "goodbye"])
        self.assertHeard(
            resident_channel(building.pbx, "9000"), [*ANNOUNCEMENT, "access_granted"]
        )
        self.assertEqual(
            (record.outcome, record.extensions_tried), ("allowed", ("2021", "9000"))
        )

    async def test_visitor_leaves_while_ringing(self) -> None:
        """The visitor hangs up while the phone rings: the ringing resident is
        hung up over AMI and the row says visitor_left."""
        building = await self.building({"1011": Phone(answer_after=20)})
        channel, record = await self.visit(
            building, visitor("101", WaitFor(RINGBACK), Wait(0.2), HangUp())
        )
        self.assertHeard(channel, [*GREETING, RINGBACK])
        resident = resident_channel(building.pbx, "1011")
        assert resident is not None
        self.assertEqual(resident.state, "gone")
        self.assertIn(
            "hung up over AMI",
            [what for _, who, what in building.pbx.timeline if who == resident.label],
        )
        self.assertEqual(
            (record.outcome, record.extensions_tried), ("visitor_left", ("1011",))
        )

    async def test_resident_drops_and_comes_back(self) -> None:
        """The resident's connection drops while deciding and comes back with
        the same UUID inside the grace period: the announcement starts over and
        their 1 still opens the door."""
        building = await self.building(
            {
                "1011": answers(
                    WaitFor("resident_intro"),
                    Drop(0.5),
                    WaitFor("resident_choice"),
                    Press("1"),
                )
            }
        )
        channel, record = await self.visit(building, visitor())
        resident = resident_channel(building.pbx, "1011")
        assert resident is not None
        self.assertEqual(len(resident.legs), 2)
        self.assertEqual(resident.legs[0].call_uuid, resident.legs[1].call_uuid)
        self.assertEqual(resident.legs[0].heard_names(), ["resident_intro"])
        self.assertEqual(
            resident.legs[1].heard_names(), [*ANNOUNCEMENT, "access_granted"]
        )
        self.assertHeard(channel, [*GREETING, RINGBACK, "access_granted", "goodbye"])
        self.assertEqual((record.outcome, record.door_result), ("allowed", "opened"))


class FoundBugTests(_BuildingTestCase):
    """Bugs in gatekeeper the simulated Asterisk found, kept as regression tests."""

    async def building(self, **kwargs: object) -> Building:
        building = await start_building(
            self.base / "building",
            reactor,
            prompts=self.prompts,
            flow=FLOW,
            recording={**RECORDING, "directory": self.recordings},
            **kwargs,  # type: ignore[arg-type]
        )
        self.addCleanup(lambda: Deferred.fromCoroutine(building.stop()))
        return building

    def test_dtmf_door_configurable(self) -> None:
        """``[door] mode = dtmf`` with ``[ami]`` configured is a valid configuration."""
        parse_config("[ami]\nsecret = s\n[door]\nmode = dtmf\ndigits = *9\n")

    async def test_dtmf_door_opens(self) -> None:
        """With the DTMF door the code is played on the visitor's channel."""
        building = await self.building(
            phones={"1011": answers(WaitFor("resident_choice"), Press("1"))},
            door={"mode": "dtmf", "digits": "*9"},
        )
        channel = building.pbx.visit(visitor())
        await channel.when_gone()
        self.assertEqual(
            building.pbx.dtmf_played, [(channel.name, "*"), (channel.name, "9")]
        )

    async def test_done_set_before_hang_up(self) -> None:
        """gatekeeper sets GK_DONE before it hangs up, so the dialplan's
        retry loop (etc/asterisk/extensions.conf) does not call back."""
        building = await self.building(
            phones={"1011": answers(WaitFor("resident_choice"), Press("2"))},
            dialplan_retries=3,
        )
        channel = building.pbx.visit(visitor())
        await channel.when_gone()
        self.assertEqual(len(channel.legs), 1, format_timeline(building.pbx))

    async def test_recording_ends_without_frames(self) -> None:
        """A phone with silence suppression (no frames while quiet) still gets
        its name recorded and its resident rung."""
        building = await self.building(
            phones={"1011": answers(WaitFor("resident_choice"), Press("2"))},
        )
        building.pbx.continuous = False
        script = Visitor(
            (
                WaitFor("ask_apartment"),
                Press("101#", gap=0.05),
                WaitFor(BEEP, after=0.15),
                Speak(0.4, quiet_before=0, quiet_after=0),  # nothing while quiet
                WaitFor("calling_resident", timeout=4),
                HangUp(),
            ),
            number=VISITOR,
        )
        channel = building.pbx.visit(script)
        await channel.when_gone()
        self.assertIn("calling_resident", channel.heard_names())
