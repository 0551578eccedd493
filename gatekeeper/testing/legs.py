"""
AudioSocket client legs that behave as Asterisk does on the wire.

What Asterisk's ``AudioSocket()`` does, and so what :class:`AsteriskLeg` does
(see the project's AudioSocket notes and ``tests/fixtures/asterisk``):

- on connect, with ``TCP_NODELAY``, one write of the UUID frame and nothing
  before it;
- audio frames of 20 ms at the leg's rate, one write each, for as long as
  the channel has audio: a phone without silence suppression sends one every
  20 ms (``continuous``), one with it only while its user talks;
- a DTMF frame on key release;
- on hang-up, a plain close: Asterisk never sends a hang-up frame.

Outbound audio of every leg is paced by one :class:`FrameClock`: a single
absolute-deadline timer for all legs, not a timer per leg, so a thousand
simulated phones cost one tick.  Everything a leg receives is timestamped
on arrival and, unless ``record`` is off (the load benchmark), kept; a
:class:`~gatekeeper.testing.audio.SoundSpotter` names the sounds in it as
they arrive.
"""

from __future__ import annotations

import uuid as uuidlib
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from gatekeeper.audiosocket.wire import Frame, FrameDecoder, FrameError, Kind, encode
from gatekeeper.testing.audio import Heard, SoundSpotter

__all__ = ["AsteriskLeg", "FrameClock", "LegEvent"]

FRAME_INTERVAL = 0.02


class FrameClock:
    """One 20 ms clock for the outbound audio of every simulated leg."""

    def __init__(self, clock: IReactorTime, interval: float = FRAME_INTERVAL) -> None:
        self.clock = clock
        self.interval = interval
        self._legs: dict[AsteriskLeg, None] = {}
        self._call: IDelayedCall | None = None
        self._t0 = 0.0
        self._k = 0
        self.late_ticks = 0

    def add(self, leg: AsteriskLeg) -> None:
        self._legs[leg] = None
        if self._call is None:
            self._t0 = self.clock.seconds()
            self._k = 0
            self._call = self.clock.callLater(0, self._tick)

    def remove(self, leg: AsteriskLeg) -> None:
        self._legs.pop(leg, None)
        if not self._legs and self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None

    def _tick(self) -> None:
        now = self.clock.seconds()
        for leg in list(self._legs):
            leg._tick()
        # Absolute deadlines: the schedule never drifts; a late tick is
        # followed by the next deadline, not a burst of missed ones.
        self._k += 1
        deadline = self._t0 + self._k * self.interval
        if deadline < now:
            self.late_ticks += 1
            self._k = int((now - self._t0) / self.interval) + 1
            deadline = self._t0 + self._k * self.interval
        if self._legs:
            self._call = self.clock.callLater(deadline - now, self._tick)
        else:
            self._call = None


LegEvent = tuple[float, str, str]
"""(seconds, what, detail): one line of a leg's own timeline."""


class AsteriskLeg(Protocol):
    """One AudioSocket connection as Asterisk makes it; see the module docstring."""

    _log = Logger()

    def __init__(
        self,
        call_uuid: str,
        clock: FrameClock,
        *,
        label: str = "leg",
        kind: Kind = Kind.SLIN,
        continuous: bool = True,
        record: bool = True,
        spotter: SoundSpotter | None = None,
    ) -> None:
        self.call_uuid = str(uuidlib.UUID(call_uuid))
        self.frames = clock
        self.label = label
        self.kind = kind
        self.continuous = continuous
        self.record = record
        self.spotter = spotter
        self._silence = bytes(kind.frame_bytes)
        self._outbound: deque[tuple[bytes, Deferred[None] | None]] = deque()
        self._decoder = FrameDecoder()
        self.received: list[tuple[float, Frame]] = []
        self.events: list[LegEvent] = []
        self.frames_sent = 0
        self.frames_received = 0
        self.connected_at: float | None = None
        self.first_audio_at: float | None = None
        self.hangup_frame_at: float | None = None
        self.closed_at: float | None = None
        self.closed_by_us = False
        self.connected = False
        self._closed: list[Deferred[None]] = []
        self._connected: list[Deferred[AsteriskLeg]] = []
        self.on_heard: Callable[[AsteriskLeg, Heard], Any] | None = None

    # -- what a caller does --------------------------------------------------

    def note(self, what: str, detail: str = "") -> None:
        self.events.append((self.frames.clock.seconds(), what, detail))

    def speak(self, pcm: bytes) -> Deferred[None]:
        """Queue ``pcm`` to be sent a frame per tick; fires once all is sent."""
        size = self.kind.frame_bytes
        done: Deferred[None] = Deferred()
        chunks = [pcm[i : i + size] for i in range(0, len(pcm), size)] or [b""]
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            if chunk:
                self._outbound.append((chunk, done if last else None))
            elif last:
                self._outbound.append((b"", done))
        return done

    def press(self, digit: str) -> None:
        """A key released: one DTMF frame, at once."""
        if self.connected:
            self.transport.write(encode(Kind.DTMF, digit.encode("ascii")))
            self.note("dtmf", digit)

    def hang_up(self) -> None:
        """The caller hangs up: Asterisk closes the socket, sending no frame."""
        if self.connected:
            self.closed_by_us = True
            self.transport.loseConnection()

    # -- Deferreds -----------------------------------------------------------

    def when_connected(self) -> Deferred[AsteriskLeg]:
        if self.connected:
            return succeed(self)
        d: Deferred[AsteriskLeg] = Deferred()
        self._connected.append(d)
        return d

    def when_closed(self) -> Deferred[None]:
        if self.closed_at is not None:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._closed.append(d)
        return d

    # -- what it hears -------------------------------------------------------

    @property
    def heard(self) -> list[Heard]:
        return self.spotter.heard if self.spotter is not None else []

    def heard_names(self, *ignore: str) -> list[str]:
        return self.spotter.names(ignore) if self.spotter is not None else []

    @property
    def audio(self) -> bytes:
        return b"".join(f.payload for _, f in self.received if f.kind.is_audio)

    # -- Protocol ------------------------------------------------------------

    def connectionMade(self) -> None:
        set_nodelay = getattr(self.transport, "setTcpNoDelay", None)
        if set_nodelay is not None:
            set_nodelay(True)
        self.connected = True
        self.transport.write(encode(Kind.UUID, uuidlib.UUID(self.call_uuid).bytes))
        self.connected_at = self.frames.clock.seconds()
        self.note("connected", self.call_uuid)
        self.frames.add(self)
        waiters, self._connected = self._connected, []
        for d in waiters:
            d.callback(self)

    def dataReceived(self, data: bytes) -> None:
        now = self.frames.clock.seconds()
        try:
            frames = self._decoder.feed(data)
        except FrameError as e:
            self.note("bad frame", str(e))
            self.transport.abortConnection()
            return
        for frame in frames:
            self.frame_received(now, frame)

    def frame_received(self, now: float, frame: Frame) -> None:
        self.frames_received += 1
        if self.record:
            self.received.append((now, frame))
        if frame.kind.is_audio:
            if self.first_audio_at is None:
                self.first_audio_at = now
            if self.spotter is not None:
                for heard in self.spotter.feed(frame.payload, now):
                    self._heard(heard)
        elif frame.kind is Kind.HANGUP:
            self.hangup_frame_at = now
            self.note("hang-up frame")

    def _heard(self, heard: Heard) -> None:
        if self.on_heard is not None:
            self.on_heard(self, heard)

    def _tick(self) -> None:
        if not self.connected:
            return
        if self._outbound:
            chunk, done = self._outbound.popleft()
            if chunk:
                self.transport.write(encode(self.kind, chunk))
                self.frames_sent += 1
            if done is not None:
                done.callback(None)
        elif self.continuous:
            self.transport.write(encode(self.kind, self._silence))
            self.frames_sent += 1

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.connected = False
        self.closed_at = self.frames.clock.seconds()
        self.frames.remove(self)
        self.note("closed", "by the caller" if self.closed_by_us else "by gatekeeper")
        outbound, self._outbound = self._outbound, deque()
        for _, done in outbound:
            if done is not None and not done.called:
                done.callback(None)
        waiters, self._closed = self._closed, []
        for d in waiters:
            d.callback(None)
