"""The pure AudioSocket codec."""

from __future__ import annotations

import itertools
import struct
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from gatekeeper.audiosocket.wire import (
    AUDIO_KINDS,
    Frame,
    FrameDecoder,
    FrameError,
    Kind,
    encode,
    encode_audio,
    encode_hangup,
    uuid_from_payload,
)

HYPOTHESIS = settings(
    deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

DIGITS = "0123456789*#ABCD"


def frames_strategy() -> st.SearchStrategy[Frame]:
    audio = st.builds(
        Frame,
        st.sampled_from(sorted(AUDIO_KINDS)),
        st.binary(min_size=1, max_size=700),
    )
    uuids = st.builds(lambda u: Frame(Kind.UUID, u.bytes), st.uuids())
    dtmf = st.builds(lambda d: Frame(Kind.DTMF, d.encode()), st.sampled_from(DIGITS))
    error = st.builds(lambda b: Frame(Kind.ERROR, bytes([b])), st.integers(0, 255))
    hangup = st.just(Frame(Kind.HANGUP, b""))
    return st.one_of(audio, uuids, dtmf, error, hangup)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


class KindTests(SynchronousTestCase):
    def test_rates(self) -> None:
        """Each audio kind knows its rate and its 20 ms frame size (0x11 is 12 kHz)."""
        self.assertEqual(Kind.SLIN.sample_rate, 8000)
        self.assertEqual(Kind.SLIN12.sample_rate, 12000)
        self.assertEqual(Kind.SLIN16.sample_rate, 16000)
        self.assertEqual(Kind.SLIN44.frame_bytes, 1764)
        self.assertEqual(Kind.SLIN.frame_bytes, 320)
        self.assertEqual(Kind.SLIN192.frame_bytes, 7680)
        self.assertIs(Kind.for_sample_rate(48000), Kind.SLIN48)
        self.assertEqual(len(AUDIO_KINDS), 9)

    def test_non_audio_has_no_rate(self) -> None:
        """Asking a control kind for its rate is a clear error."""
        self.assertRaises(ValueError, lambda: Kind.DTMF.sample_rate)
        self.assertRaises(ValueError, Kind.for_sample_rate, 11025)


class EncodeTests(SynchronousTestCase):
    def test_audio_frame_bytes(self) -> None:
        """An audio frame is kind, big-endian length and payload in one bytes."""
        self.assertEqual(encode_audio(Kind.SLIN, b"\x01\x02"), b"\x10\x00\x02\x01\x02")

    def test_hangup(self) -> None:
        """The hang-up frame is three bytes: 00 00 00."""
        self.assertEqual(encode_hangup(), b"\x00\x00\x00")

    def test_audio_refuses_what_asterisk_hangs_up_on(self) -> None:
        """A non-audio kind, an empty or an oversized payload never leaves encode_audio."""
        self.assertRaises(ValueError, encode_audio, Kind.DTMF, b"1")
        self.assertRaises(ValueError, encode_audio, Kind.UUID, bytes(16))
        self.assertRaises(ValueError, encode_audio, Kind.ERROR, b"\x01")
        self.assertRaises(ValueError, encode_audio, Kind.SLIN, b"")
        self.assertRaises(ValueError, encode_audio, Kind.SLIN, bytes(65536))

    def test_encode_bounds(self) -> None:
        """The general encoder refuses a payload the length field cannot carry."""
        self.assertRaises(ValueError, encode, Kind.SLIN, bytes(65536))
        self.assertEqual(len(encode(Kind.SLIN, bytes(65535))), 65538)


class DecoderTests(SynchronousTestCase):
    @HYPOTHESIS
    @given(st.lists(frames_strategy(), max_size=30), st.lists(st.integers(0, 10**6)))
    def test_round_trip_any_chunking(
        self, frames: list[Frame], cuts: list[int]
    ) -> None:
        """Every kind survives encode then decode, however the bytes are cut."""
        data = b"".join(encode(f.kind, f.payload) for f in frames)
        decoder = FrameDecoder()
        out: list[Frame] = []
        for piece in chunked(data, cuts):
            out.extend(decoder.feed(piece))
        self.assertEqual(out, frames)
        self.assertEqual(decoder.buffered, 0)

    @HYPOTHESIS
    @given(st.uuids())
    def test_uuid_payload_canonical(self, value: uuid.UUID) -> None:
        """A UUID payload becomes the lowercase dashed 36-character form."""
        frame = FrameDecoder().feed(encode(Kind.UUID, value.bytes))[0]
        self.assertEqual(frame.uuid, str(value))
        self.assertEqual(len(frame.uuid), 36)
        self.assertEqual(frame.uuid, frame.uuid.lower())

    def test_known_uuid(self) -> None:
        """The bytes of the fixtures' UUID decode to the text Asterisk was given."""
        payload = bytes.fromhex("e69439e914894bbab55d37612b5dffaf")
        self.assertEqual(
            uuid_from_payload(payload), "e69439e9-1489-4bba-b55d-37612b5dffaf"
        )

    def test_partial_header_waits(self) -> None:
        """A truncated header is not an error: the decoder waits for the rest."""
        decoder = FrameDecoder()
        self.assertEqual(decoder.feed(b"\x10\x01"), [])
        self.assertEqual(decoder.buffered, 2)
        self.assertEqual(
            decoder.feed(b"\x40" + bytes(320)), [Frame(Kind.SLIN, bytes(320))]
        )

    def test_truncated_payload_waits(self) -> None:
        """A frame whose payload is still on its way yields nothing yet."""
        decoder = FrameDecoder()
        self.assertEqual(decoder.feed(encode(Kind.SLIN, bytes(320))[:-1]), [])
        self.assertEqual(decoder.buffered, 322)

    def test_oversized_length(self) -> None:
        """A declared length over the bound is refused before it is buffered."""
        decoder = FrameDecoder(max_payload=1000)
        error = self.assertRaises(FrameError, decoder.feed, b"\x10\x03\xe9")
        self.assertIn("1001 bytes exceeds the 1000-byte bound", str(error))

    def test_unknown_kind(self) -> None:
        """A kind byte Asterisk does not define is a protocol error."""
        error = self.assertRaises(FrameError, FrameDecoder().feed, b"\x02\x00\x01x")
        self.assertIn("unknown frame kind 0x02", str(error))

    def test_zero_length_audio(self) -> None:
        """A zero-length audio frame is a protocol error, as it is for Asterisk."""
        error = self.assertRaises(FrameError, FrameDecoder().feed, b"\x10\x00\x00")
        self.assertIn("zero-length SLIN frame", str(error))

    def test_zero_length_uuid_and_dtmf(self) -> None:
        """Zero-length UUID and DTMF frames are refused."""
        self.assertRaises(FrameError, FrameDecoder().feed, b"\x01\x00\x00")
        self.assertRaises(FrameError, FrameDecoder().feed, b"\x03\x00\x00")

    def test_uuid_wrong_length(self) -> None:
        """A UUID payload of other than 16 bytes is refused."""
        error = self.assertRaises(
            FrameError, FrameDecoder().feed, encode(Kind.UUID, bytes(15))
        )
        self.assertIn("15 bytes, not 16", str(error))

    def test_dtmf_not_a_digit(self) -> None:
        """A DTMF payload that is not one keypad character is refused."""
        self.assertRaises(FrameError, FrameDecoder().feed, encode(Kind.DTMF, b"x"))
        self.assertRaises(FrameError, FrameDecoder().feed, encode(Kind.DTMF, b"12"))

    def test_error_keeps_earlier_frames(self) -> None:
        """Frames before the fault in one feed are handed over with the error."""
        good = encode(Kind.UUID, bytes(16)) + encode(Kind.DTMF, b"5")
        error = self.assertRaises(
            FrameError, FrameDecoder().feed, good + b"\x02\x00\x00"
        )
        self.assertEqual([f.kind for f in error.frames], [Kind.UUID, Kind.DTMF])

    def test_spent_after_error(self) -> None:
        """After a framing error every later feed fails too."""
        decoder = FrameDecoder()
        self.assertRaises(FrameError, decoder.feed, b"\x02\x00\x01x")
        self.assertRaises(FrameError, decoder.feed, encode(Kind.SLIN, b"ok"))

    def test_bad_bound(self) -> None:
        """A bound outside what the length field can express is refused."""
        self.assertRaises(ValueError, FrameDecoder, 0)
        self.assertRaises(ValueError, FrameDecoder, 65536)

    def test_one_megabyte_one_byte_at_a_time(self) -> None:
        """A 1 MB stream fed byte by byte decodes whole (quadratic copying would not finish)."""
        frame = encode(Kind.SLIN, bytes(range(256)) + bytes(64))
        count = (1 << 20) // len(frame) + 1
        data = frame * count
        decoder = FrameDecoder()
        feed = decoder.feed
        decoded = 0
        for i in range(len(data)):
            decoded += len(feed(data[i : i + 1]))
        self.assertEqual(decoded, count)
        self.assertEqual(decoder.buffered, 0)

    def test_header_layout(self) -> None:
        """The length field is unsigned big-endian (lengths over 32767 work)."""
        frame = FrameDecoder().feed(encode(Kind.SLIN, bytes(40000)))[0]
        self.assertEqual(len(frame.payload), 40000)
        self.assertEqual(
            struct.unpack("!BH", encode(Kind.SLIN, bytes(40000))[:3]), (0x10, 40000)
        )
