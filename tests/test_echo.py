"""The echo application, paced by a Clock."""

from __future__ import annotations

from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from gatekeeper.audiosocket.wire import Kind
from gatekeeper.echo import EchoApplication
from gatekeeper.media.pacer import Pacer

from .fakes import FakeLeg

CALL = "e69439e9-1489-4bba-b55d-37612b5dffaf"


class EchoTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.pacer = Pacer(self.clock)
        self.app = EchoApplication(self.pacer)
        self.leg = FakeLeg(self.clock, CALL)
        self.call = self.app.bind(CALL, self.leg)

    def tick(self, n: int = 1) -> None:
        for _ in range(n):
            self.clock.advance(0.02)

    def test_audio_comes_back_paced(self) -> None:
        """Each received frame goes back on the next tick, one per 20 ms, never in a burst."""
        self.clock.advance(0)
        frames = [bytes([i]) * 320 for i in range(1, 6)]
        for frame in frames:  # all five arrive at once
            self.call.audio_received(Kind.SLIN, frame)
        self.tick(5)
        sent = [(t, p) for t, _, p in self.leg.sent]
        echoed = [(round(t, 6), p) for t, p in sent if any(p)]
        self.assertEqual([p for _, p in echoed], frames)
        self.assertEqual([t for t, _ in echoed], [0.02, 0.04, 0.06, 0.08, 0.1])

    def test_silence_fills_gaps(self) -> None:
        """With nothing to echo, every tick carries silence so Asterisk never times out."""
        self.clock.advance(0)
        self.tick(100)  # two seconds of a caller who sends nothing
        self.assertEqual(len(self.leg.sent), 101)
        self.assertTrue(all(p == bytes(320) for _, _, p in self.leg.sent))

    def test_odd_sizes_rechunked(self) -> None:
        """A short frame (276 bytes at the end of a playback) comes back padded, in order."""
        self.clock.advance(0)
        self.call.audio_received(Kind.SLIN, b"\x05" * 276)
        self.tick()
        self.assertEqual(self.leg.sent[-1][2], b"\x05" * 276 + bytes(44))

    def test_same_kind_and_rate(self) -> None:
        """16 kHz audio comes back as 16 kHz frames of 640 bytes."""
        self.clock.advance(0)
        self.call.audio_received(Kind.SLIN16, b"\x07" * 640)
        self.tick()
        _, kind, payload = self.leg.sent[-1]
        self.assertEqual((kind, payload), (Kind.SLIN16, b"\x07" * 640))

    def test_dtmf_logged_with_uuid(self) -> None:
        """A DTMF digit is logged with the call's UUID as a field."""
        with capturedLogs() as events:
            self.call.dtmf_received("5")
        self.assertEqual(events[0]["call_uuid"], CALL)
        self.assertEqual(events[0]["digit"], "5")

    def test_hangup_stops_pacing(self) -> None:
        """When the caller hangs up, the call leaves the pacer and no timer remains."""
        self.call.connection_lost(Failure(ConnectionDone()))
        self.assertEqual(len(self.pacer), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
