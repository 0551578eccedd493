"""
The two fuzz targets and the invariants each input must keep.

Both targets read the same input format, so one corpus serves both::

    flags (1 byte) | seed (1 byte) | stream

:func:`check_decoder` feeds ``stream`` to a
:class:`~gatekeeper.audiosocket.wire.FrameDecoder` in pieces and compares
what it finds with :func:`reference_decode`, a slow decoder written straight
from the wire format in ``audiosocket.md``: same frames, the fault found in
the same piece (a bad header before its payload is buffered), never more
than one partial frame buffered.

:func:`check_protocol` plays ``stream`` as hostile Asterisk connections to
an :class:`~gatekeeper.audiosocket.protocol.AudioSocketProtocol` over a
``StringTransport``, with a real
:class:`~gatekeeper.session.registry.SessionRegistry` on a ``Clock`` as the
binder.  The stream is cut into up to four connections at
:data:`SEPARATOR`.  On the same factory and registry a healthy call sends a
frame after every piece of hostile input and must get each one delivered and
nothing else (no frame, no hang-up); a second call expects its resident, so
a hostile connection may bind as that resident.  Each pair's listener obeys
DTMF ``A``-``D`` and ``*`` (end the pair, expect / release / withdraw the
resident, hang the leg up), so the fuzzer reaches the registry's re-entrant
paths.  After the last byte every connection is closed and the clock run
past every grace period and deadline: the registry must then be empty and
the clock hold no timer.

The flags byte: bits 0-1 choose what goes before the first connection's
bytes (nothing; the healthy call's UUID frame, to impersonate it; the UUID
frame of the call expecting its resident; a fresh UUID frame); bit 2 closes
connections with a reset rather than cleanly; bit 3 lets the clock run
between pieces (reaching the handshake and idle timeouts); bit 4 runs the
connections one after another instead of interleaved; bits 6-7 choose the
cutting (whole, fixed size ``seed + 1``, one byte at a time, sizes drawn
from ``seed``).  The decoder target takes its payload bound from bits 0-1.

Every broken invariant raises :class:`InvariantViolation` with a ``kind``
(``exception``, ``leak``, ``healthy``, ``decoder``, ``log``) so a long run can
count them apart.
"""

from __future__ import annotations

import struct
import traceback
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from attrs import define, field, frozen
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from gatekeeper.audiosocket.protocol import (
    AudioSocketFactory,
    AudioSocketProtocol,
    ListenerPolicy,
)
from gatekeeper.audiosocket.wire import (
    MAX_WIRE_PAYLOAD,
    Frame,
    FrameDecoder,
    FrameError,
    Kind,
    encode,
)
from gatekeeper.session.callpair import CallPair, Leg, LegState, Outcome
from gatekeeper.session.interfaces import IPairListener
from gatekeeper.session.registry import SessionRegistry

__all__ = [
    "EXPECTED",
    "FRESH",
    "HEALTHY",
    "POLICY",
    "SEPARATOR",
    "FuzzCase",
    "InvariantViolation",
    "check_decoder",
    "check_protocol",
    "log_capture",
    "reference_decode",
]

SEPARATOR = b"\xfeGK\xfe"
"""Cuts a stream into connections; 0xfe is no frame kind, so it is rare inside one."""

HEALTHY = "5eed0000-0000-4000-8000-00000000600d"
EXPECTED = "5eed0000-0000-4000-8000-0000000e9ec7"
FRESH = "5eed0000-0000-4000-8000-00000000f5e5"
LEADS: tuple[bytes, ...] = (
    b"",
    encode(Kind.UUID, uuid.UUID(HEALTHY).bytes),
    encode(Kind.UUID, uuid.UUID(EXPECTED).bytes),
    encode(Kind.UUID, uuid.UUID(FRESH).bytes),
)

# Short timeouts so that inputs which let the clock run reach them; a bound
# small enough that the fuzzer meets it, large enough for the transcripts'
# 640-byte slin16 frames.
POLICY = ListenerPolicy(
    max_payload=1024, handshake_timeout=2.0, idle_timeout=6.0, max_connections=16
)
GRACE = 3.0
RESIDENT_DEADLINE = 30.0
DECODER_BOUNDS = (16, 320, 1024, MAX_WIRE_PAYLOAD)
MAX_CONNECTIONS = 4
# A decoder compacts its buffer once the consumed prefix passes 64 KiB.
COMPACTION = 65536

PROTOCOL_NAMESPACE = AudioSocketProtocol._log.namespace


class InvariantViolation(AssertionError):
    """One input broke a promise; ``kind`` says which family of promise."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"[{kind}] {message}")
        self.kind = kind


# -- the input format -------------------------------------------------------


@frozen
class FuzzCase:
    """One input, read; :meth:`encode` writes it back (for the seed corpus)."""

    lead: int = 0
    reset: bool = False
    time_passes: bool = False
    sequential: bool = False
    chunking: int = 0
    seed: int = 0
    stream: bytes = b""

    @classmethod
    def parse(cls, data: bytes) -> FuzzCase:
        flags = data[0] if data else 0
        seed = data[1] if len(data) > 1 else 0
        return cls(
            lead=flags & 3,
            reset=bool(flags & 4),
            time_passes=bool(flags & 8),
            sequential=bool(flags & 16),
            chunking=flags >> 6,
            seed=seed,
            stream=bytes(data[2:]),
        )

    def encode(self) -> bytes:
        flags = (
            self.lead
            | self.reset << 2
            | self.time_passes << 3
            | self.sequential << 4
            | self.chunking << 6
        )
        return bytes((flags, self.seed)) + self.stream

    @property
    def segments(self) -> list[bytes]:
        """The bytes of each hostile connection, the lead before the first."""
        parts = self.stream.split(SEPARATOR, MAX_CONNECTIONS - 1)
        parts[0] = LEADS[self.lead] + parts[0]
        return parts

    def pieces(self, data: bytes) -> list[bytes]:
        """``data`` cut the way the flags say, as dataReceived calls."""
        if not data:
            return []
        if self.chunking == 0:
            return [data]
        if self.chunking == 1:
            size = self.seed + 1
            return [data[i : i + size] for i in range(0, len(data), size)]
        if self.chunking == 2:
            return [data[i : i + 1] for i in range(len(data))]
        out = []
        state = self.seed * 2654435761 + 1
        i = 0
        while i < len(data):
            state = (state * 1103515245 + 12345) & 0x7FFFFFFF
            size = 1 + (state >> 8) % 1500
            out.append(data[i : i + size])
            i += size
        return out

    def pause(self, step: int) -> float:
        """Seconds the clock runs after piece number ``step`` (0 unless bit 3)."""
        if not self.time_passes:
            return 0.0
        return ((self.seed + 7 * step) % 16) * 0.25


# -- the reference decoder ---------------------------------------------------

_DTMF = frozenset(b"0123456789*#ABCDabcd")
_KNOWN = frozenset(int(k) for k in Kind)
_AUDIO = frozenset(range(0x10, 0x19))


@frozen
class Reference:
    """What the wire format says a stream holds."""

    frames: tuple[tuple[int, bytes], ...]
    # Bytes after which the fault is certain (None: the stream is fine so far).
    error_at: int | None
    consumed: int


def reference_decode(stream: bytes, max_payload: int) -> Reference:
    """Decode ``stream`` the slow, obvious way, straight from the spec."""
    frames: list[tuple[int, bytes]] = []
    offset = 0
    while len(stream) - offset >= 3:
        kind = stream[offset]
        length = stream[offset + 1] * 256 + stream[offset + 2]
        if kind not in _KNOWN or length > max_payload:
            return Reference(tuple(frames), offset + 3, offset)
        end = offset + 3 + length
        if end > len(stream):
            break
        payload = stream[offset + 3 : end]
        bad = (
            (kind in _AUDIO and length == 0)
            or (kind == Kind.UUID and length != 16)
            or (kind == Kind.DTMF and (length != 1 or payload[0] not in _DTMF))
            or (kind == Kind.ERROR and length != 1)
        )
        if bad:
            return Reference(tuple(frames), end, offset)
        frames.append((kind, payload))
        offset = end
    return Reference(tuple(frames), None, offset)


# -- the decoder target ---------------------------------------------------------


def check_decoder(data: bytes) -> None:
    """Feed one input to a FrameDecoder in pieces; compare with the reference."""
    case = FuzzCase.parse(data)
    bound = DECODER_BOUNDS[case.lead]
    stream = case.stream
    reference = reference_decode(stream, bound)
    decoder = FrameDecoder(bound)
    found: list[tuple[int, bytes]] = []
    fed = 0
    failed = False
    try:
        for piece in case.pieces(stream):
            fed += len(piece)
            try:
                frames = decoder.feed(piece)
            except FrameError as e:
                found.extend(_plain(e.frames))
                _decoder_failed(reference, found, fed, len(piece))
                failed = True
                break
            found.extend(_plain(frames))
            if reference.error_at is not None and fed >= reference.error_at:
                raise InvariantViolation(
                    "decoder", f"no FrameError after {fed} bytes; expected one"
                )
            _check_buffer(decoder, bound)
        if failed:
            try:
                decoder.feed(b"\x10\x00\x01\x00")
            except FrameError:
                pass
            else:
                raise InvariantViolation("decoder", "fed again after a FrameError")
            return
        if found != list(reference.frames):
            raise InvariantViolation("decoder", "frames differ from the reference")
        if decoder.buffered != len(stream) - reference.consumed:
            raise InvariantViolation(
                "decoder",
                f"buffered {decoder.buffered}, expected "
                f"{len(stream) - reference.consumed}",
            )
        again = b"".join(encode(kind, payload) for kind, payload in found)
        if again != stream[: reference.consumed]:
            raise InvariantViolation("decoder", "frames do not re-encode to the input")
    except InvariantViolation:
        raise
    except Exception as e:
        raise InvariantViolation("exception", _describe(e)) from e


def _plain(frames: Sequence[Frame]) -> list[tuple[int, bytes]]:
    return [(int(f.kind), f.payload) for f in frames]


def _decoder_failed(
    reference: Reference, found: list[tuple[int, bytes]], fed: int, piece: int
) -> None:
    if reference.error_at is None:
        raise InvariantViolation("decoder", "FrameError on a well-formed stream")
    if not fed - piece < reference.error_at <= fed:
        raise InvariantViolation(
            "decoder",
            f"FrameError in the piece ending at {fed}; the fault is at "
            f"{reference.error_at}",
        )
    if found != list(reference.frames):
        raise InvariantViolation("decoder", "frames before the fault differ")


def _check_buffer(decoder: FrameDecoder, bound: int) -> None:
    """At most one partial frame waits, and the memory kept stays bounded."""
    if decoder.buffered >= bound + 3:
        raise InvariantViolation(
            "decoder", f"{decoder.buffered} bytes buffered with a {bound}-byte bound"
        )
    # A private attribute, read on purpose: what the decoder really keeps.
    kept = len(decoder._buffer)
    if kept > COMPACTION + bound + 3:
        raise InvariantViolation("decoder", f"{kept} bytes kept in the buffer")


# -- the protocol and registry target -------------------------------------------


@implementer(IPairListener)
@define
class HealthyListener:
    """The healthy call's flow: remembers what arrived and never acts."""

    audio: list[bytes] = field(factory=list)
    digits: list[str] = field(factory=list)
    events: list[str] = field(factory=list)

    def leg_attached(self, leg: Leg) -> None:
        self.events.append("attached")

    def leg_dropped(self, leg: Leg) -> None:
        self.events.append("dropped")

    def leg_reattached(self, leg: Leg) -> None:
        self.events.append("reattached")

    def audio_received(self, leg: Leg, kind: Kind, payload: bytes) -> None:
        self.audio.append(payload)

    def dtmf_received(self, leg: Leg, digit: str) -> None:
        self.digits.append(digit)

    def pair_ended(self, pair: CallPair) -> None:
        self.events.append("ended")


@implementer(IPairListener)
@define
class ObedientListener:
    """Any other pair's flow: the caller's keys drive the registry's API."""

    registry: SessionRegistry
    pair: CallPair

    def leg_attached(self, leg: Leg) -> None:
        pass

    def leg_dropped(self, leg: Leg) -> None:
        pass

    def leg_reattached(self, leg: Leg) -> None:
        pass

    def audio_received(self, leg: Leg, kind: Kind, payload: bytes) -> None:
        pass

    def dtmf_received(self, leg: Leg, digit: str) -> None:
        pair, registry = self.pair, self.registry
        key = digit.upper()
        if pair.ended:
            return
        if key == "A":
            pair.end(Outcome.ALLOWED)
        elif key == "B" and pair.resident is None:
            registry.expect_resident(pair.call_uuid, 5.0, target="fuzz")
        elif key == "C":
            registry.release_resident(pair.call_uuid)
        elif key == "D":
            registry.withdraw_resident(pair.call_uuid)
        elif key == "*":
            leg.hang_up()

    def pair_ended(self, pair: CallPair) -> None:
        pass


@define(eq=False)
class Peer:
    """One connection of the scenario and what we know of it."""

    name: str
    protocol: AudioSocketProtocol
    transport: StringTransport
    # Fed the same pieces while the protocol still reads, to know its faults.
    reference: FrameDecoder = field(factory=lambda: FrameDecoder(POLICY.max_payload))
    frame_error: bool = False
    hung_up_by_call: bool = False

    @property
    def open(self) -> bool:
        return self.protocol.connected


class ProtocolScenario:
    """One input played against a fresh factory, registry and clock."""

    def __init__(self, case: FuzzCase, events: list[dict[str, Any]]) -> None:
        self.case = case
        self.events = events
        self.clock = Clock()
        self.registry = SessionRegistry(
            self.clock, grace_period=GRACE, listener_factory=self._listener
        )
        self.registry.startService()
        self.factory = AudioSocketFactory(
            self.registry, self.clock, POLICY, direct_send=False
        )
        self.healthy_listener = HealthyListener()
        self.healthy_sent: list[bytes] = []
        self.healthy_digits: list[str] = []
        self._ports = iter(range(40000, 50000))
        self.steps = 0

    def _listener(self, pair: CallPair) -> IPairListener:
        if pair.call_uuid == HEALTHY:
            return self.healthy_listener
        return ObedientListener(self.registry, pair)

    def connect(self, name: str) -> Peer:
        address = IPv4Address("TCP", "127.0.0.1", next(self._ports))
        protocol = self.factory.buildProtocol(address)
        if protocol is None:
            raise InvariantViolation("exception", f"{name}: connection refused")
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        peer = Peer(name, protocol, transport)
        hang_up = protocol.hang_up

        def hang_up_spy() -> None:
            peer.hung_up_by_call = True
            hang_up()

        protocol.hang_up = hang_up_spy  # type: ignore[method-assign]
        return peer

    def run(self) -> None:
        case = self.case
        self.healthy = self.connect("healthy")
        self.healthy.protocol.dataReceived(LEADS[1])
        self.healthy_pair = self.registry.get(HEALTHY)
        if self.healthy_pair is None:
            raise InvariantViolation("healthy", "the healthy call was not bound")
        self.expected = self.connect("expected-visitor")
        self.expected.protocol.dataReceived(LEADS[2])
        self.registry.expect_resident(EXPECTED, RESIDENT_DEADLINE, target="resident")
        self.hostile: list[Peer] = []
        segments = case.segments
        if case.sequential:
            for i, segment in enumerate(segments):
                peer = self.connect(f"hostile-{i}")
                self.hostile.append(peer)
                for piece in case.pieces(segment) or [b""]:
                    self.feed(peer, piece)
                self.close(peer)
        else:
            queues = []
            for i, segment in enumerate(segments):
                peer = self.connect(f"hostile-{i}")
                self.hostile.append(peer)
                queues.append((peer, case.pieces(segment) or [b""]))
            position = 0
            while any(position < len(pieces) for _, pieces in queues):
                for peer, pieces in queues:
                    if position < len(pieces):
                        self.feed(peer, pieces[position])
                position += 1
            for peer in self.hostile:
                self.close(peer)
        self.check_healthy(final=True)
        self.finish()

    def feed(self, peer: Peer, piece: bytes) -> None:
        protocol = peer.protocol
        if piece and protocol.connected and not peer.transport.disconnecting:
            reading = not protocol._closing
            protocol.dataReceived(piece)
            if reading and not peer.frame_error:
                try:
                    peer.reference.feed(piece)
                except FrameError:
                    peer.frame_error = True
                    if not peer.transport.disconnecting:
                        raise InvariantViolation(
                            "log", f"{peer.name}: a FrameError left the connection open"
                        ) from None
            decoder = protocol._decoder
            assert decoder is not None
            _check_buffer(decoder, POLICY.max_payload)
        self.step()

    def step(self) -> None:
        """Time passes, closes are delivered, the healthy calls send a frame."""
        pause = self.case.pause(self.steps)
        self.steps += 1
        if pause:
            self.clock.advance(pause)
        self.deliver_closes()
        if self.steps > 32 and self.steps % 16 and not pause:
            # Inputs fed a byte at a time make thousands of steps: past the
            # first few, the healthy call speaks on every 16th (and whenever
            # time passes, so that it never idles out).
            return
        n = len(self.healthy_sent)
        if n % 7 == 6:
            digit = "0123456789#*"[n % 12]
            self.healthy_digits.append(digit)
            self.healthy.protocol.dataReceived(encode(Kind.DTMF, digit.encode()))
        payload = struct.pack("<I", n) * 80
        self.healthy_sent.append(payload)
        self.healthy.protocol.dataReceived(encode(Kind.SLIN, payload))
        if self.expected.open and not self.expected.transport.disconnecting:
            self.expected.protocol.dataReceived(encode(Kind.SLIN, payload))
        self.deliver_closes()
        self.check_healthy()

    def deliver_closes(self) -> None:
        """What the reactor does once a transport we were told to close is gone."""
        for peer in [self.healthy, self.expected, *self.hostile]:
            if peer.open and peer.transport.disconnecting:
                peer.protocol.connectionLost(Failure(ConnectionDone()))

    def close(self, peer: Peer) -> None:
        """Asterisk's side goes away: cleanly or with a reset."""
        if peer.open:
            if peer.transport.disconnecting or not self.case.reset:
                reason = Failure(ConnectionDone())
            else:
                reason = Failure(ConnectionLost("reset by peer"))
            peer.protocol.connectionLost(reason)

    def check_healthy(self, final: bool = False) -> None:
        pair = self.healthy_pair
        listener = self.healthy_listener
        if self.registry.get(HEALTHY) is not pair or pair.outcome is not None:
            raise InvariantViolation("healthy", "the healthy pair is gone")
        visitor = pair.visitor
        if (
            visitor.state is not LegState.LIVE
            or visitor.connection is not self.healthy.protocol
            or pair.resident is not None
        ):
            raise InvariantViolation("healthy", f"the healthy pair changed: {pair!r}")
        if self.healthy.transport.disconnecting or not self.healthy.open:
            raise InvariantViolation("healthy", "the healthy connection was closed")
        if self.healthy.transport.value():
            raise InvariantViolation(
                "healthy",
                f"the healthy call was sent {self.healthy.transport.value()!r}",
            )
        if not final:
            # Cheap per step; the whole lists are compared once, at the end.
            sent, got = self.healthy_sent, listener.audio
            if len(got) != len(sent) or (got and got[-1] != sent[-1]):
                raise InvariantViolation("healthy", "the healthy call lost a frame")
        elif (
            listener.audio != self.healthy_sent
            or listener.digits != self.healthy_digits
        ):
            raise InvariantViolation("healthy", "the healthy call lost frames")
        if listener.events != ["attached"]:
            raise InvariantViolation("healthy", f"healthy events {listener.events}")

    def finish(self) -> None:
        """Close everything, run out every timer, and look for leftovers."""
        for peer in [self.healthy, self.expected, *self.hostile]:
            self.close(peer)
        # Past every grace period and resident deadline, a second at a time:
        # a timer still pending then is one nothing will ever cancel.
        for _ in range(int(RESIDENT_DEADLINE + GRACE) + 2):
            if not self.clock.getDelayedCalls():
                break
            self.clock.advance(1.0)
            self.deliver_closes()
        registry = self.registry
        leftovers = []
        if len(registry):
            leftovers.append(f"{len(registry)} pairs: {registry.live_pairs()!r}")
        if registry._bound:
            leftovers.append(f"{len(registry._bound)} bound connections")
        if registry._closing:
            leftovers.append(f"{len(registry._closing)} legs closing")
        if self.factory.connections:
            leftovers.append(f"{len(self.factory.connections)} factory connections")
        if self.clock.getDelayedCalls():
            leftovers.append(f"timers {self.clock.getDelayedCalls()!r}")
        if leftovers:
            raise InvariantViolation("leak", "; ".join(leftovers))
        self.check_logs()

    def check_logs(self) -> None:
        lines: dict[str, list[dict[str, Any]]] = {}
        for event in self.events:
            if "log_failure" in event:
                failure = event["log_failure"]
                raise InvariantViolation(
                    "exception",
                    f"logged failure: {event.get('log_format')}: "
                    f"{failure.getTraceback()}",
                )
            if event.get("log_namespace") == PROTOCOL_NAMESPACE:
                lines.setdefault(str(event.get("peer")), []).append(event)
        errors = 0
        for peer in self.hostile:
            mine = lines.get(peer.protocol.peer, [])
            if len(mine) > 1:
                formats = [e.get("log_format") for e in mine]
                raise InvariantViolation(
                    "log", f"{peer.name}: {len(mine)} lines {formats}"
                )
            if peer.frame_error and not mine and not peer.hung_up_by_call:
                raise InvariantViolation("log", f"{peer.name}: closed without a line")
            errors += sum("protocol error" in e.get("log_format", "") for e in mine)
        if errors != self.factory.protocol_errors:
            raise InvariantViolation(
                "log",
                f"{errors} protocol error lines, {self.factory.protocol_errors} counted",
            )


def check_protocol(data: bytes, events: list[dict[str, Any]]) -> ProtocolScenario:
    """
    Play one input; ``events`` must be receiving the global log (see
    :func:`log_capture`) and is cleared first.
    """
    events.clear()
    scenario = ProtocolScenario(FuzzCase.parse(data), events)
    try:
        scenario.run()
    except InvariantViolation:
        raise
    except Exception as e:
        raise InvariantViolation("exception", _describe(e)) from e
    return scenario


@contextmanager
def log_capture() -> Iterator[list[dict[str, Any]]]:
    """Every global log event, in a list, while the block runs."""
    events: list[dict[str, Any]] = []
    observer: ILogObserver = events.append  # type: ignore[assignment]
    globalLogPublisher.addObserver(observer)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(observer)


def _describe(e: BaseException) -> str:
    return "".join(traceback.format_exception(e)).rstrip()
