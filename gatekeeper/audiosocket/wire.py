"""
The AudioSocket wire format: pure, no I/O.

Every message on an AudioSocket TCP stream, in both directions, is::

    kind (1 byte) | length (2 bytes, unsigned big-endian) | payload (length bytes)

There is no version and no timestamp.  Asterisk sends one UUID frame
(``0x01``, 16 raw bytes in RFC 4122 order) first, then audio frames (``0x10``
for 8 kHz signed 16-bit little-endian mono, ``0x11``-``0x18`` for the higher
rates the channel driver may negotiate) and DTMF frames (``0x03``, one ASCII
byte, on key release).  It never sends a hang-up frame: it closes the socket.

A server may send only hang-up (``0x00``) and audio frames, and every audio
frame it sends must have a payload of 1..65535 bytes written in one piece:
anything else makes Asterisk hang the call up.  :func:`encode_audio` and
:func:`encode_hangup` are therefore the only encoders the server uses;
:func:`encode` is the general one, for tests and the simulated Asterisk.

:class:`FrameDecoder` takes bytes in any chunking and returns whole frames.  It
keeps one buffer and an offset into it, so a stream fed one byte at a time
decodes in linear time, and it refuses a frame whose declared payload exceeds
its bound before buffering it.
"""

from __future__ import annotations

import enum
import struct
import uuid

from attrs import frozen

__all__ = [
    "AUDIO_KINDS",
    "MAX_WIRE_PAYLOAD",
    "Frame",
    "FrameDecoder",
    "FrameError",
    "Kind",
    "audio_kind_of",
    "encode",
    "encode_audio",
    "encode_hangup",
    "uuid_from_payload",
]

MAX_WIRE_PAYLOAD = 0xFFFF
_HEADER = struct.Struct("!BH")
HEADER_SIZE = _HEADER.size


class Kind(enum.IntEnum):
    """Every frame kind Asterisk's ``res_audiosocket.h`` defines."""

    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    SLIN = 0x10
    SLIN12 = 0x11
    SLIN16 = 0x12
    SLIN24 = 0x13
    SLIN32 = 0x14
    SLIN44 = 0x15
    SLIN48 = 0x16
    SLIN96 = 0x17
    SLIN192 = 0x18
    ERROR = 0xFF

    @property
    def is_audio(self) -> bool:
        return self in _SAMPLE_RATES

    @property
    def sample_rate(self) -> int:
        """Samples per second of an audio kind; ``ValueError`` for the others."""
        try:
            return _SAMPLE_RATES[self]
        except KeyError:
            raise ValueError(f"{self.name} frames carry no audio") from None

    @property
    def frame_bytes(self) -> int:
        """Bytes of 16-bit mono PCM in 20 ms at this kind's rate."""
        return self.sample_rate // 50 * 2

    @classmethod
    def for_sample_rate(cls, rate: int) -> Kind:
        for kind, kind_rate in _SAMPLE_RATES.items():
            if kind_rate == rate:
                return kind
        raise ValueError(f"AudioSocket has no audio kind for {rate} Hz")


_SAMPLE_RATES: dict[Kind, int] = {
    Kind.SLIN: 8000,
    Kind.SLIN12: 12000,
    Kind.SLIN16: 16000,
    Kind.SLIN24: 24000,
    Kind.SLIN32: 32000,
    Kind.SLIN44: 44100,
    Kind.SLIN48: 48000,
    Kind.SLIN96: 96000,
    Kind.SLIN192: 192000,
}
AUDIO_KINDS: frozenset[Kind] = frozenset(_SAMPLE_RATES)

# Index by the kind byte: the member, or None for a byte Asterisk never defines.
_KIND_BY_BYTE: tuple[Kind | None, ...] = tuple(
    Kind(b) if b in Kind._value2member_map_ else None for b in range(256)
)


class FrameError(ValueError):
    """
    The peer broke the wire format; the connection cannot go on.

    ``frames`` holds the whole frames that came before the fault in the same
    feed, so a caller can still act on them (a UUID, a last DTMF digit).
    """

    frames: list[Frame]

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.frames = []


@frozen
class Frame:
    kind: Kind
    payload: bytes

    @property
    def uuid(self) -> str:
        """The canonical call UUID carried by a ``UUID`` frame."""
        if self.kind is not Kind.UUID:
            raise FrameError(f"a {self.kind.name} frame carries no UUID")
        return uuid_from_payload(self.payload)

    @property
    def digit(self) -> str:
        if self.kind is not Kind.DTMF:
            raise FrameError(f"a {self.kind.name} frame carries no DTMF digit")
        return self.payload.decode("ascii")


_DTMF_DIGITS = frozenset(b"0123456789*#ABCDabcd")


def uuid_from_payload(payload: bytes) -> str:
    """The lowercase dashed 36-character form of a 16-byte UUID payload."""
    if len(payload) != 16:
        raise FrameError(f"UUID payload is {len(payload)} bytes, not 16")
    return str(uuid.UUID(bytes=bytes(payload)))


def encode(kind: Kind | int, payload: bytes = b"") -> bytes:
    """Any frame, header and payload as one ``bytes`` (tests, simulators)."""
    if len(payload) > MAX_WIRE_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes does not fit a frame")
    return _HEADER.pack(kind, len(payload)) + payload


def encode_audio(kind: Kind, payload: bytes) -> bytes:
    """An audio frame Asterisk will accept, or ``ValueError``."""
    if kind not in _SAMPLE_RATES:
        raise ValueError(f"{kind!r} is not an audio kind; Asterisk would hang up")
    size = len(payload)
    if not 0 < size <= MAX_WIRE_PAYLOAD:
        raise ValueError(f"audio payload of {size} bytes; Asterisk accepts 1..65535")
    return _HEADER.pack(kind, size) + payload


_HANGUP = _HEADER.pack(Kind.HANGUP, 0)


def encode_hangup() -> bytes:
    return _HANGUP


def audio_kind_of(data: bytes, max_payload: int = MAX_WIRE_PAYLOAD) -> Kind | None:
    """
    The kind of ``data`` if it is exactly one valid audio frame, else None.

    Asterisk writes one frame per ``write()``, so most reads are exactly one
    audio frame; this lets the protocol hand those on without buffering them.
    Anything else (None) goes through :class:`FrameDecoder`.
    """
    if len(data) < 4:
        return None
    kind = _KIND_BY_BYTE[data[0]]
    length = (data[1] << 8) | data[2]
    if len(data) == 3 + length and length <= max_payload and kind in _SAMPLE_RATES:
        return kind
    return None


class FrameDecoder:
    """
    Incremental decoder: feed it bytes, get whole frames.

    After a :class:`FrameError` the decoder is spent: the stream has lost its
    framing and no later byte can be trusted.
    """

    def __init__(self, max_payload: int = MAX_WIRE_PAYLOAD) -> None:
        if not 0 < max_payload <= MAX_WIRE_PAYLOAD:
            raise ValueError(f"max_payload must be 1..{MAX_WIRE_PAYLOAD}")
        self.max_payload = max_payload
        self._buffer = bytearray()
        self._offset = 0
        self._failed: FrameError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole frame."""
        return len(self._buffer) - self._offset

    def feed(self, data: bytes) -> list[Frame]:
        """Every frame completed by ``data``, in order; ``FrameError`` on garbage."""
        if self._failed is not None:
            raise self._failed
        buffer = self._buffer
        if not buffer:
            # The usual read: exactly one audio frame, as Asterisk writes them.
            # Decoded straight from ``data``, with no copy into the buffer.
            kind = audio_kind_of(data, self.max_payload)
            if kind is not None:
                return [Frame(kind, data[3:])]
        buffer += data
        offset = self._offset
        end = len(buffer)
        frames: list[Frame] = []
        append = frames.append
        kinds = _KIND_BY_BYTE
        audio_kinds = _SAMPLE_RATES
        max_payload = self.max_payload
        try:
            while end - offset >= 3:
                kind = kinds[buffer[offset]]
                length = (buffer[offset + 1] << 8) | buffer[offset + 2]
                if kind is None:
                    raise FrameError(f"unknown frame kind 0x{buffer[offset]:02x}")
                if length > max_payload:
                    raise FrameError(
                        f"{kind.name} frame of {length} bytes exceeds the "
                        f"{max_payload}-byte bound"
                    )
                stop = offset + 3 + length
                if stop > end:
                    break
                payload = bytes(buffer[offset + 3 : stop])
                if kind not in audio_kinds:
                    _check(kind, payload)
                elif not length:
                    raise FrameError(f"zero-length {kind.name} frame")
                append(Frame(kind, payload))
                offset = stop
        except FrameError as e:
            e.frames = frames
            self._failed = FrameError(f"stream already broken: {e}")
            self._buffer = bytearray()
            self._offset = 0
            raise
        # Compact only when the consumed prefix dominates, so a stream fed in
        # tiny pieces is not copied once per piece.
        if offset == end:
            buffer.clear()
            offset = 0
        elif offset > 65536 and offset * 2 > end:
            del buffer[:offset]
            offset = 0
        self._offset = offset
        return frames


def _check(kind: Kind, payload: bytes) -> None:
    """Payload rules of the kinds that are not audio."""
    if kind is Kind.UUID:
        if len(payload) != 16:
            raise FrameError(f"UUID payload is {len(payload)} bytes, not 16")
    elif kind is Kind.DTMF:
        if len(payload) != 1 or payload[0] not in _DTMF_DIGITS:
            raise FrameError(f"DTMF payload {payload!r} is not one digit")
    elif kind is Kind.ERROR and len(payload) != 1:
        raise FrameError(f"error payload is {len(payload)} bytes, not 1")
    # A hang-up frame's length bytes are ignored by Asterisk; so are they here.
