"""Whole visits through the flow, registry and pacer, on a Clock."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from gatekeeper.dialer.interfaces import Outcome as DialOutcome

from .rig import CALL, Rig

GREETING = ["greeting", "ask_apartment"]
ANNOUNCEMENT = ["resident_intro", "~", "resident_choice"]


class VisitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.rig = Rig(Path(self.mktemp() + "-residents.csv"))

    def finish(self) -> None:
        """Let the last prompts play and the hang-ups close."""
        self.rig.run(3)
        self.assertEqual(len(self.rig.registry), 0)
        self.assertEqual(len(self.rig.conversations.live), 0)
        self.assertEqual(self.rig.clock.getDelayedCalls(), [])

    def test_allow(self) -> None:
        """Gate to door: the resident presses 1, the door opens, both are told."""
        rig = self.rig
        visitor = rig.to_resident()
        self.assertEqual(rig.dialer.rung, ["1011"])
        resident = rig.resident_answers()
        resident.press("1")
        rig.run(1)
        self.finish()
        self.assertEqual(
            visitor.heard(),
            [
                *GREETING,
                "say_name",
                "~",
                "calling_resident",
                "~",
                "access_granted",
                "goodbye",
            ],
        )
        self.assertEqual(resident.heard(), [*ANNOUNCEMENT, "access_granted"])
        self.assertEqual(rig.door.opened, [(CALL, "101")])
        (record,) = rig.log.records
        self.assertEqual(record.outcome, "allowed")
        self.assertEqual(record.apartment, "101")
        self.assertEqual(record.extensions_tried, ("1011",))
        self.assertEqual(record.door_result, "opened")
        self.assertTrue(record.recording_path.endswith(f"{CALL}.wav"))
        self.assertTrue(visitor.hung_up and resident.hung_up)

    def test_record_before_outcome(self) -> None:
        """The visitor hears nothing of the outcome until the record is durable."""
        rig = self.rig
        rig.log.hold = True
        visitor = rig.to_resident()
        resident = rig.resident_answers()
        resident.press("2")
        rig.run(2)
        self.assertNotIn("access_denied", visitor.heard())
        rig.log.pending.pop().callback(None)
        rig.run(1)
        self.assertEqual(visitor.heard()[-2:], ["access_denied", "goodbye"])
        self.finish()

    def test_deny(self) -> None:
        """The resident presses 2: no door, the visitor is told no."""
        rig = self.rig
        visitor = rig.to_resident()
        resident = rig.resident_answers()
        resident.press("2")
        self.finish()
        self.assertEqual(rig.door.opened, [])
        self.assertEqual(rig.log.records[0].outcome, "denied")
        self.assertEqual(visitor.heard()[-2:], ["access_denied", "goodbye"])

    def test_visitor_cannot_open(self) -> None:
        """The visitor pressing 1 while the resident decides opens nothing."""
        rig = self.rig
        visitor = rig.to_resident()
        rig.dialer.answer("1011")
        rig.connect("127.0.0.1:2")
        rig.run(0.5)
        visitor.press("1")
        rig.run(0.5)
        self.assertEqual(rig.door.opened, [])
        self.assertEqual(rig.log.records, [])

    def test_talk_then_allow(self) -> None:
        """3 bridges the two legs (each hears the other), then 1 opens."""
        rig = self.rig
        visitor = rig.to_resident()
        resident = rig.resident_answers()
        resident.press("3")
        rig.run(0.1)
        before = len(resident.audio)
        voice = b"\x34\x12" * 160  # a constant the resident must hear
        for _ in range(10):
            visitor.send(voice)
            rig.clock.advance(0.02)
        self.assertIn(voice, resident.audio[before:])
        resident.press("1")
        self.finish()
        self.assertEqual(rig.log.records[0].outcome, "allowed")

    def test_busy_then_next_extension(self) -> None:
        """A busy first extension rings the next, then the concierge."""
        rig = self.rig
        visitor = rig.to_resident()
        rig.dialer.answer("1011", DialOutcome.BUSY)
        rig.dialer.answer("1012", DialOutcome.NO_ANSWER)
        self.assertEqual(rig.dialer.rung, ["1011", "1012", "9000"])
        rig.dialer.answer("9000", DialOutcome.BUSY)
        self.finish()
        self.assertEqual(rig.log.records[0].outcome, "busy")
        self.assertEqual(rig.log.records[0].extensions_tried, ("1011", "1012", "9000"))
        self.assertEqual(visitor.heard()[-2:], ["resident_not_answering", "goodbye"])

    def test_unknown_apartment(self) -> None:
        """Three wrong apartments end the visit with a record."""
        rig = self.rig
        visitor = rig.connect()
        for _ in range(3):
            rig.run(0.3)
            visitor.press("999#")
        self.finish()
        self.assertEqual(rig.log.records[0].outcome, "unknown_apartment")
        self.assertEqual(visitor.heard().count("invalid_apartment"), 3)

    def test_ami_down(self) -> None:
        """With AMI down the visitor is told residents cannot be reached."""
        rig = self.rig
        rig.dialer.connected = False
        visitor = rig.to_resident()
        self.finish()
        self.assertEqual(rig.log.records[0].outcome, "resident_unreachable")
        self.assertEqual(visitor.heard()[-2:], ["residents_unreachable", "goodbye"])

    def test_visitor_hangs_up_while_ringing(self) -> None:
        """AMI says the visitor hung up: the resident call is cancelled, visitor_left."""
        rig = self.rig
        visitor = rig.to_resident()
        visitor.close()
        assert rig.dialer.visitor_gone is not None
        rig.dialer.visitor_gone.callback(True)
        self.finish()
        self.assertEqual(rig.log.records[0].outcome, "visitor_left")
        self.assertGreaterEqual(rig.dialer.hung_up_residents, 1)

    def test_visitor_lost(self) -> None:
        """A visitor leg that drops and never comes back ends as visitor_lost."""
        rig = self.rig
        visitor = rig.to_resident()
        visitor.close()
        rig.run(11)
        self.finish()
        self.assertEqual(rig.log.records[0].outcome, "visitor_lost")

    def test_resident_drops_and_comes_back(self) -> None:
        """A resident leg back inside the grace period hears the announcement again."""
        rig = self.rig
        rig.to_resident()
        rig.dialer.answer("1011")
        resident = rig.connect("127.0.0.1:2")
        rig.run(0.5)
        resident.close()
        rig.run(2)
        again = rig.connect("127.0.0.1:3")
        rig.run(2.5)
        self.assertEqual(again.heard(), ANNOUNCEMENT)
        again.press("1")
        self.finish()
        self.assertEqual(rig.log.records[0].outcome, "allowed")

    def test_resident_hangs_up_next_extension(self) -> None:
        """A resident who hangs up before deciding: the next extension rings."""
        rig = self.rig
        rig.to_resident()
        rig.dialer.answer("1011")
        resident = rig.connect("127.0.0.1:2")
        rig.run(0.5)
        resident.close()
        rig.dialer.resident_hangs_up("1011")
        rig.run(0.1)
        self.assertEqual(rig.dialer.rung, ["1011", "1012"])
        rig.dialer.answer("1012")
        second = rig.connect("127.0.0.1:3")
        rig.run(2.5)
        second.press("2")
        self.finish()
        self.assertEqual(rig.log.records[0].outcome, "denied")

    def test_record_retried(self) -> None:
        """A failed write of the visit record is retried before anyone is told."""
        rig = self.rig
        rig.log.failures = 2
        visitor = rig.to_resident()
        resident = rig.resident_answers()
        resident.press("2")
        self.finish()
        self.assertEqual(rig.log.records[0].outcome, "denied")
        self.assertEqual(visitor.heard()[-2:], ["access_denied", "goodbye"])


class MorePathsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.rig = Rig(Path(self.mktemp() + "-residents.csv"))

    def finish(self) -> None:
        self.rig.run(3)
        self.assertEqual(len(self.rig.registry), 0)
        self.assertEqual(self.rig.clock.getDelayedCalls(), [])

    def test_concierge_fallback(self) -> None:
        """Nobody at the apartment answers: the concierge picks up and allows."""
        rig = self.rig
        rig.to_resident()
        rig.dialer.answer("1011", DialOutcome.NO_ANSWER)
        rig.dialer.answer("1012", DialOutcome.NO_ANSWER)
        self.assertEqual(rig.dialer.rung, ["1011", "1012", "9000"])
        rig.dialer.answer("9000")
        concierge = rig.connect("127.0.0.1:9")
        rig.run(2.5)
        concierge.press("1")
        self.finish()
        (record,) = rig.log.records
        self.assertEqual(record.outcome, "allowed")
        self.assertEqual(record.extensions_tried, ("1011", "1012", "9000"))

    def visitor_leaves(self, reach: str) -> list[str]:
        """Bring a visit to ``reach``, then the visitor hangs up (AMI says so)."""
        rig = self.rig
        visitor = rig.connect()
        rig.run(0.3)
        resident = None
        if reach != "apartment":
            visitor.press("101#")
            rig.run(0.5)
        if reach not in ("apartment", "recording"):
            rig.speak(visitor)
        if reach in ("deciding", "talking"):
            rig.dialer.answer("1011")
            resident = rig.connect("127.0.0.1:2")
            rig.run(2.5)
        if reach == "talking":
            assert resident is not None
            resident.press("3")
            rig.run(0.2)
        visitor.close()
        assert rig.dialer.visitor_gone is not None
        rig.dialer.visitor_gone.callback(True)
        self.finish()
        self.assertEqual(rig.door.opened, [])
        return [r.outcome for r in rig.log.records]

    def test_visitor_leaves_in_each_phase(self) -> None:
        """Whatever the phase, a visitor who hangs up ends the visit as visitor_left."""
        for reach in ("apartment", "recording", "calling", "deciding"):
            self.rig = Rig(Path(self.mktemp() + "-residents.csv"))
            self.assertEqual(self.visitor_leaves(reach), ["visitor_left"], reach)

    def test_visitor_leaves_while_talking(self) -> None:
        """A visitor hanging up during talk ends the visit; nobody opens the door."""
        self.assertEqual(self.visitor_leaves("talking"), ["visitor_left"])

    def test_resident_told_visitor_left(self) -> None:
        """The resident deciding when the visitor leaves hears that the visitor left."""
        rig = self.rig
        visitor = rig.to_resident()
        resident = rig.resident_answers()
        visitor.close()
        assert rig.dialer.visitor_gone is not None
        rig.dialer.visitor_gone.callback(True)
        self.finish()
        self.assertEqual(resident.heard()[-1], "visitor_left")


class EndingTests(SynchronousTestCase):
    def test_visitor_lost_while_talking(self) -> None:
        """A visitor leg that drops during talk and never returns is visitor_lost,
        even though forgetting the call fires the resident's hang-up watch."""
        rig = Rig(Path(self.mktemp() + "-residents.csv"))
        visitor = rig.to_resident()
        resident = rig.resident_answers()
        resident.press("3")
        rig.run(0.2)
        visitor.close()
        rig.run(12)
        self.assertEqual([r.outcome for r in rig.log.records], ["visitor_lost"])
        self.assertEqual(rig.dialer.forgotten, [CALL])

    def test_visitor_lost_while_ringing(self) -> None:
        """Ending while an answered extension's watch is pending rings nobody else."""
        rig = Rig(Path(self.mktemp() + "-residents.csv"))
        visitor = rig.to_resident()
        rig.dialer.answer("1011")
        visitor.close()
        rig.run(12)
        self.assertEqual([r.outcome for r in rig.log.records], ["visitor_lost"])
        self.assertEqual(rig.dialer.rung, ["1011"])


class InbandDtmfTests(SynchronousTestCase):
    def test_tones_in_the_audio_choose_the_apartment(self) -> None:
        """With [dtmf] inband on, keypad tones inside the audio count as digits."""
        import attrs

        from gatekeeper.media.dtmf import dtmf_sequence

        rig = Rig(Path(self.mktemp() + "-residents.csv"))
        rig.conversations.services = attrs.evolve(rig.services, inband_dtmf=True)
        visitor = rig.connect()
        rig.run(0.3)
        tones = dtmf_sequence("101#", 8000).astype("<i2").tobytes()
        for at in range(0, len(tones), 320):
            visitor.send(tones[at : at + 320].ljust(320, b"\0"))
            rig.clock.advance(0.02)
        rig.run(0.5)
        self.assertEqual(rig.registry.get(CALL).context.apartment, "101")

    def test_off_by_default(self) -> None:
        """Without [dtmf] inband, tones in the audio are only audio."""
        from gatekeeper.media.dtmf import dtmf_sequence

        rig = Rig(Path(self.mktemp() + "-residents.csv"))
        visitor = rig.connect()
        rig.run(0.3)
        tones = dtmf_sequence("101#", 8000).astype("<i2").tobytes()
        for at in range(0, len(tones), 320):
            visitor.send(tones[at : at + 320].ljust(320, b"\0"))
            rig.clock.advance(0.02)
        rig.run(0.5)
        self.assertIsNone(rig.registry.get(CALL).context.apartment)
