"""The shared 20 ms pacer, driven by a Clock."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gatekeeper.audiosocket.wire import Kind
from gatekeeper.media.pacer import (
    LatenessHistogram,
    LegGone,
    Pacer,
    PlaybackInterrupted,
)

from ..fakes import FakeLeg


def run(clock: Clock, seconds: float, step: float = 0.001) -> None:
    for _ in range(round(seconds / step)):
        clock.advance(step)


class PacingTests(SynchronousTestCase):
    def test_one_frame_every_20ms(self) -> None:
        """A leg gets exactly one frame per 20 ms, at absolute deadlines."""
        clock = Clock()
        pacer = Pacer(clock)
        leg = FakeLeg(clock)
        pacer.attach(leg)
        clock.advance(0)
        run(clock, 0.1)
        self.assertEqual(leg.times, [0.0, 0.02, 0.04, 0.06, 0.08, 0.1])

    def test_silence_when_idle(self) -> None:
        """With nothing queued each tick sends a full frame of silence."""
        clock = Clock()
        pacer = Pacer(clock)
        leg = FakeLeg(clock)
        pacer.attach(leg)
        run(clock, 0.04)
        self.assertTrue(leg.sent)
        for _, kind, payload in leg.sent:
            self.assertEqual((kind, payload), (Kind.SLIN, bytes(320)))

    def test_frame_size_follows_rate(self) -> None:
        """At 16 kHz a frame is 640 bytes; at 48 kHz 1,920."""
        clock = Clock()
        pacer = Pacer(clock)
        wide, full = FakeLeg(clock), FakeLeg(clock)
        pacer.attach(wide, Kind.SLIN16)
        pacer.attach(full, Kind.SLIN48)
        run(clock, 0.02)
        self.assertEqual(len(wide.sent[0][2]), 640)
        self.assertEqual(len(full.sent[0][2]), 1920)
        self.assertEqual(full.sent[0][1], Kind.SLIN48)

    def test_legs_spread_over_slots(self) -> None:
        """Legs go to the least-loaded of the 1 ms slots, each at its own offset."""
        clock = Clock()
        pacer = Pacer(clock, slots=20)
        legs = [FakeLeg(clock) for _ in range(40)]
        streams = [pacer.attach(leg) for leg in legs]
        self.assertEqual(sorted(s.slot for s in streams), sorted(list(range(20)) * 2))
        clock.advance(0)
        run(clock, 0.06)
        for leg, stream in zip(legs, streams, strict=True):
            first = leg.times[0]
            self.assertAlmostEqual(first, stream.slot * 0.001, places=6)
            self.assertEqual(
                leg.times[:3], [round(first + k * 0.02, 6) for k in range(3)]
            )

    def test_new_leg_takes_the_soonest_slot(self) -> None:
        """A leg that joins mid-period starts in the next slot due, not a period later."""
        clock = Clock()
        pacer = Pacer(clock, slots=20)
        first = FakeLeg(clock)
        pacer.attach(first)
        clock.advance(0)
        for _ in range(10):
            clock.advance(0.001)
        late = FakeLeg(clock)
        stream = pacer.attach(late)
        for _ in range(3):
            clock.advance(0.001)
        self.assertIn(stream.slot, (10, 11))  # the slot due now, or the next
        self.assertEqual(late.times, [0.011])
        self.assertEqual(len(clock.getDelayedCalls()), 1)

    def test_one_timer_for_all_legs(self) -> None:
        """However many legs, the pacer holds one pending timer."""
        clock = Clock()
        pacer = Pacer(clock)
        for _ in range(500):
            pacer.attach(FakeLeg(clock))
        run(clock, 0.05)
        self.assertEqual(len(clock.getDelayedCalls()), 1)

    def test_no_timer_without_legs(self) -> None:
        """When the last leg leaves, the timer goes too."""
        clock = Clock()
        pacer = Pacer(clock)
        stream = pacer.attach(FakeLeg(clock))
        run(clock, 0.05)
        pacer.detach(stream)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(len(pacer), 0)

    def test_catch_up_bounded(self) -> None:
        """After a 100 ms stall a leg gets at most max_catchup frames, the rest skipped."""
        clock = Clock()
        pacer = Pacer(clock, max_catchup=2)
        leg = FakeLeg(clock)
        pacer.attach(leg)
        clock.advance(0)
        clock.advance(0.1)
        self.assertEqual(leg.times, [0.0, 0.1, 0.1])
        self.assertEqual(pacer.frames_skipped, 3)
        run(clock, 0.02)
        self.assertEqual(leg.times[-1], 0.12)

    def test_small_delay_catches_up(self) -> None:
        """A tick 30 ms late sends the owed frames, and the schedule does not drift."""
        clock = Clock()
        pacer = Pacer(clock, max_catchup=2)
        leg = FakeLeg(clock)
        pacer.attach(leg)
        clock.advance(0)
        clock.advance(0.05)
        self.assertEqual(leg.times, [0.0, 0.05, 0.05])
        self.assertEqual(pacer.frames_skipped, 0)
        run(clock, 0.01)
        self.assertEqual(leg.times[-1], 0.06)

    def test_lateness_recorded(self) -> None:
        """Each frame's lateness lands in the histogram."""
        clock = Clock()
        pacer = Pacer(clock)
        pacer.attach(FakeLeg(clock))
        clock.advance(0)
        clock.advance(0.023)
        self.assertEqual(pacer.lateness.total, 2)
        self.assertAlmostEqual(pacer.lateness.max, 0.003)

    def test_lead(self) -> None:
        """With a lead, the timer wakes that much early and serves the due slot."""
        clock = Clock()
        pacer = Pacer(clock, lead=0.0005)
        leg = FakeLeg(clock)
        pacer.attach(leg)
        clock.advance(0)
        self.assertAlmostEqual(clock.getDelayedCalls()[0].getTime(), 0.0195)
        clock.advance(0.0195)
        self.assertEqual(leg.times, [0.0, 0.0195])
        self.assertEqual(pacer.lateness.max, 0.0)

    def test_lead_bounds(self) -> None:
        """A lead as long as a slot would serve slots out of turn: refused."""
        self.assertRaises(ValueError, Pacer, Clock(), lead=0.001)
        self.assertRaises(ValueError, Pacer, Clock(), lead=-0.1)


class StreamTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.pacer = Pacer(self.clock)
        self.leg = FakeLeg(self.clock)
        self.stream = self.pacer.attach(self.leg)

    def test_play_fires_after_last_frame(self) -> None:
        """play() fires once the frame holding its last byte was sent, padded with silence."""
        audio = b"\x01\x00" * 500  # 3.125 frames
        done = self.stream.play(audio)
        self.clock.advance(0)
        run(self.clock, 0.04)
        self.assertNoResult(done)
        run(self.clock, 0.02)
        self.successResultOf(done)
        sent = self.leg.audio
        self.assertEqual(sent[:1000], audio)
        self.assertEqual(sent[1000:1280], bytes(280))

    def test_plays_in_order(self) -> None:
        """Two plays queue one after the other."""
        first = self.stream.play(b"\x01" * 320)
        second = self.stream.play(b"\x02" * 320)
        self.clock.advance(0)
        self.successResultOf(first)
        self.assertNoResult(second)
        run(self.clock, 0.02)
        self.successResultOf(second)
        self.assertEqual([p[0] for _, _, p in self.leg.sent], [1, 2])

    def test_interrupt(self) -> None:
        """interrupt() drops the queue and fails pending plays (barge-in)."""
        done = self.stream.play(bytes(3200))
        self.clock.advance(0)
        self.stream.interrupt()
        self.failureResultOf(done, PlaybackInterrupted)
        self.assertEqual(self.stream.queued_bytes, 0)

    def test_detach_fails_plays(self) -> None:
        """A leg that leaves fails its pending plays with LegGone."""
        done = self.stream.play(bytes(3200))
        self.pacer.detach(self.stream)
        self.failureResultOf(done, LegGone)
        self.failureResultOf(self.stream.play(b"\x00\x00"), LegGone)

    def test_empty_play(self) -> None:
        """Playing nothing succeeds at once."""
        self.successResultOf(self.stream.play(b""))

    def test_enqueue_bounded(self) -> None:
        """enqueue() keeps at most max_queued bytes and counts what it dropped."""
        limit = self.stream.max_queued
        self.stream.enqueue(bytes(limit + 100))
        self.assertEqual(self.stream.queued_bytes, limit)
        self.assertEqual(self.stream.overflowed_bytes, 100)


class HistogramTests(SynchronousTestCase):
    def test_quantiles(self) -> None:
        """Quantiles come from bucket bounds, capped at the observed maximum."""
        h = LatenessHistogram()
        h.observe(0.0001, 98)
        h.observe(0.004, 1)
        h.observe(0.012, 1)
        self.assertEqual(h.quantile(0.5), 0.00025)
        self.assertEqual(h.quantile(0.99), 0.004)
        self.assertEqual(h.quantile(1.0), 0.012)
        h.reset()
        self.assertEqual(h.quantile(0.99), 0.0)
