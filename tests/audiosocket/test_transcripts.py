"""Every byte stream recorded from a real Asterisk, replayed through the protocol."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from gatekeeper.audiosocket.protocol import AudioSocketFactory
from gatekeeper.audiosocket.wire import Kind

from ..transcripts import Transcript, transcript, transcript_names
from .recording import RecordingBinder, RecordingReceiver


def replay(chunks: list[bytes]) -> tuple[RecordingBinder, StringTransport, Clock]:
    clock = Clock()
    binder = RecordingBinder()
    factory = AudioSocketFactory(binder, clock)
    address = IPv4Address("TCP", "127.0.0.1", 40000)
    protocol = factory.buildProtocol(address)
    assert protocol is not None
    transport = StringTransport(peerAddress=address)
    protocol.makeConnection(transport)
    for chunk in chunks:
        protocol.dataReceived(chunk)
    return binder, transport, clock


def frame_chunks(t: Transcript) -> list[bytes]:
    """The stream cut where the sidecar says each frame began (one write each)."""
    offsets = [f.offset for f in t.frames] + [len(t.data)]
    return [t.data[a:b] for a, b in itertools.pairwise(offsets)]


class TranscriptTests(SynchronousTestCase):
    def check(self, t: Transcript, receiver: RecordingReceiver) -> None:
        expected_audio = [(f.kind, f.length) for f in t.frames if f.kind >= 0x10]
        got_audio = [(int(kind), len(payload)) for kind, payload in receiver.audio]
        self.assertEqual(got_audio, expected_audio)
        self.assertEqual("".join(receiver.digits), t.digits)

    def test_every_transcript_is_listed(self) -> None:
        """All eleven recorded streams are here to replay."""
        self.assertEqual(len(transcript_names()), 11)

    def test_replay_frame_by_frame(self) -> None:
        """Each stream, one write per frame as Asterisk sends, yields the sidecar's frames."""
        for name in transcript_names():
            t = transcript(name)
            binder, transport, _ = replay(frame_chunks(t))
            if t.uuid is None:
                self.assertEqual(binder.calls, {}, name)
                continue
            self.assertEqual(list(binder.calls), [t.uuid], name)
            self.check(t, binder.calls[t.uuid])
            self.assertFalse(transport.disconnecting, name)
            self.assertEqual(transport.value(), b"", name)

    def test_replay_whole(self) -> None:
        """Each stream delivered in a single read yields the same frames."""
        for name in transcript_names():
            t = transcript(name)
            if t.uuid is None:
                continue
            binder, _, _ = replay([t.data])
            self.check(t, binder.calls[t.uuid])

    @settings(
        deadline=None,
        derandomize=True,
        max_examples=30,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        st.sampled_from(["visitor-dtmf-hangup", "chan-audiosocket-slin16"]),
        st.lists(st.integers(1, 2000), min_size=1, max_size=50),
    )
    def test_replay_any_chunking(self, name: str, sizes: list[int]) -> None:
        """However TCP cuts the stream, the frames are the same."""
        t = transcript(name)
        chunks, at, i = [], 0, 0
        while at < len(t.data):
            size = sizes[i % len(sizes)]
            chunks.append(t.data[at : at + size])
            at += size
            i += 1
        binder, _, _ = replay(chunks)
        self.check(t, binder.calls[t.uuid])  # type: ignore[index]

    def test_uppercase_uuid_same_on_wire(self) -> None:
        """An upper-case UUID in the dialplan arrives as the same lowercase call UUID."""
        binder, _, _ = replay([transcript("uuid-uppercase").data])
        self.assertEqual(list(binder.calls), ["e69439e9-1489-4bba-b55d-37612b5dffaf"])

    def test_slin16_from_channel_driver(self) -> None:
        """The channel driver's c(slin16) stream is kind 0x12, 640-byte frames."""
        binder, _, _ = replay([transcript("chan-audiosocket-slin16").data])
        (receiver,) = binder.calls.values()
        kinds = {kind for kind, _ in receiver.audio}
        self.assertEqual(kinds, {Kind.SLIN16})
        self.assertEqual(len(receiver.audio[0][1]), Kind.SLIN16.frame_bytes)

    def test_idle_caller_is_not_dropped_early(self) -> None:
        """A caller who sends nothing after the UUID is kept for the idle timeout."""
        _binder, transport, clock = replay([transcript("idle-timeout").data])
        clock.advance(30)
        self.assertFalse(transport.disconnecting)
        clock.advance(31)
        self.assertTrue(transport.disconnecting)
