"""Tests for gatekeeper.media.bridge, with fake outbound streams."""

from __future__ import annotations

import numpy as np
from twisted.trial.unittest import SynchronousTestCase

from gatekeeper.audiosocket.wire import Kind
from gatekeeper.media.bridge import AudioPath, AudioSink, Bridge
from gatekeeper.media.resample import pcm_to_samples, samples_to_pcm
from gatekeeper.media.tones import tone


class FakeStream:
    """An outbound stream that plays one frame (or silence) per tick()."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self.queue = bytearray()
        self.sent: list[bytes] = []

    @property
    def queued_bytes(self) -> int:
        return len(self.queue)

    def enqueue(self, pcm: bytes) -> None:
        self.queue += pcm

    def tick(self) -> None:
        size = self.kind.frame_bytes
        frame = bytes(self.queue[:size]).ljust(size, b"\0")
        del self.queue[:size]
        self.sent.append(frame)


def frames(signal: np.ndarray, rate: int) -> list[bytes]:
    pcm = samples_to_pcm(signal)
    size = rate // 50 * 2
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


class BridgeTests(SynchronousTestCase):
    def test_fake_is_a_sink(self) -> None:
        """The fake offers what the bridge needs of an OutboundStream."""
        sink: AudioSink = FakeStream(Kind.SLIN)
        self.assertEqual(sink.queued_bytes, 0)

    def test_same_rate_passes_through(self) -> None:
        """Between two 8 kHz legs, each frame is forwarded unchanged, both ways."""
        visitor, resident = FakeStream(Kind.SLIN), FakeStream(Kind.SLIN)
        bridge = Bridge(visitor, resident)
        bridge.from_visitor(Kind.SLIN, b"\x01\x00" * 160)
        bridge.from_resident(Kind.SLIN, b"\x02\x00" * 160)
        self.assertEqual(bytes(resident.queue), b"\x01\x00" * 160)
        self.assertEqual(bytes(visitor.queue), b"\x02\x00" * 160)

    def test_rates_converted_each_way(self) -> None:
        """An 8 kHz visitor and a 16 kHz resident hear each other's 1 kHz tone intact."""
        visitor, resident = FakeStream(Kind.SLIN), FakeStream(Kind.SLIN16)
        bridge = Bridge(visitor, resident)
        for frame_8k, frame_16k in zip(
            frames(tone(1000, 1.0, 8000), 8000),
            frames(tone(1000, 1.0, 16000), 16000),
            strict=True,
        ):
            bridge.from_visitor(Kind.SLIN, frame_8k)
            bridge.from_resident(Kind.SLIN16, frame_16k)
            self.assertEqual(resident.queued_bytes, 640)
            self.assertEqual(visitor.queued_bytes, 320)
            resident.tick()
            visitor.tick()
        for stream, rate in ((resident, 16000), (visitor, 8000)):
            heard = pcm_to_samples(b"".join(stream.sent)).astype(float)[
                rate // 10 : -rate // 10
            ]
            spectrum = np.abs(np.fft.rfft(heard * np.hanning(heard.size)))
            peak = np.fft.rfftfreq(heard.size, 1 / rate)[spectrum.argmax()]
            self.assertEqual(peak, 1000.0)
            # No click at frame joins: a clean 1 kHz sine's second difference is bounded.
            bound = (2 * np.pi * 1000 / rate) ** 2 * 7400 + 3
            self.assertLess(np.abs(np.diff(heard, 2)).max(), bound)

    def test_missing_frames_are_silence(self) -> None:
        """When one side sends nothing the other hears silence, not old audio."""
        visitor, resident = FakeStream(Kind.SLIN), FakeStream(Kind.SLIN)
        bridge = Bridge(visitor, resident)
        bridge.from_visitor(Kind.SLIN, b"\x10\x00" * 160)
        for _ in range(3):
            resident.tick()
        self.assertEqual(resident.sent, [b"\x10\x00" * 160, bytes(320), bytes(320)])

    def test_backlog_bounded(self) -> None:
        """A burst beyond 100 ms is dropped and counted; the delay never grows past it."""
        visitor, resident = FakeStream(Kind.SLIN), FakeStream(Kind.SLIN16)
        bridge = Bridge(visitor, resident)
        for _ in range(20):
            bridge.from_visitor(Kind.SLIN, bytes(320))
        self.assertEqual(resident.queued_bytes, 5 * 640)
        self.assertEqual(bridge.to_resident.dropped_bytes, 15 * 640)
        self.assertEqual(bridge.dropped_bytes, 15 * 640)
        resident.tick()
        bridge.from_visitor(Kind.SLIN, bytes(320))
        self.assertEqual(resident.queued_bytes, 5 * 640)

    def test_short_frames_joined(self) -> None:
        """Odd-sized frames are queued only as whole 20 ms frames, never padded."""
        sink = FakeStream(Kind.SLIN)
        path = AudioPath(sink)
        path.feed(b"\x01\x00" * 138, 8000)  # Asterisk's 276-byte frame
        self.assertEqual(sink.queued_bytes, 0)
        path.feed(b"\x02\x00" * 160, 8000)
        self.assertEqual(bytes(sink.queue), b"\x01\x00" * 138 + b"\x02\x00" * 22)
        self.assertEqual(path.forwarded_bytes, 320)

    def test_torn_sample_dropped(self) -> None:
        """A payload of an odd byte count is dropped rather than shift every sample."""
        sink = FakeStream(Kind.SLIN)
        path = AudioPath(sink)
        path.feed(b"\x01\x00\x02", 8000)
        path.feed(b"\x03\x00" * 160, 8000)
        self.assertEqual(bytes(sink.queue), b"\x03\x00" * 160)

    def test_sink_rate_change_followed(self) -> None:
        """If a leg's stream changes kind, audio follows at the new rate."""
        sink = FakeStream(Kind.SLIN)
        path = AudioPath(sink)
        path.feed(bytes(640), 16000)
        self.assertEqual(sink.queued_bytes, 320)
        sink.kind = Kind.SLIN48
        path.feed(bytes(640), 16000)
        self.assertEqual(sink.queued_bytes, 320 + 1920)

    def test_close_stops_forwarding(self) -> None:
        """After close() nothing more is queued on either leg."""
        visitor, resident = FakeStream(Kind.SLIN), FakeStream(Kind.SLIN)
        bridge = Bridge(visitor, resident)
        bridge.close()
        self.assertTrue(bridge.closed)
        bridge.from_visitor(Kind.SLIN, bytes(320))
        bridge.from_resident(Kind.SLIN, bytes(320))
        self.assertEqual((visitor.queued_bytes, resident.queued_bytes), (0, 0))
