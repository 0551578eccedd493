"""
One clock for every call's outbound audio.

Asterisk neither paces nor buffers what an AudioSocket server sends, and its
``AudioSocket()`` application hangs up after 2 s with no frame either way.
So every live leg must get exactly one 20 ms frame per 20 ms, for as long as
it lives: queued audio when there is some, silence when there is none.

A timer per call would cost a thousand timers for a thousand calls.  The
:class:`Pacer` runs one schedule instead, cut into ``slots`` (twenty 1 ms
slots by default); each leg is placed in the least-loaded slot and is sent
its frame when its slot comes round.  Spreading the legs keeps each burst of
sends short, so reads are never starved for long (see the project's
performance notes).  Deadlines are absolute (``t0 + j * slot``), so the
schedule never drifts.  When the reactor is late the pacer serves every slot
it owes, at most ``max_catchup`` frames per leg, and skips the rest rather
than build a backlog; it records how late each frame left in
:attr:`Pacer.lateness`.
"""

from __future__ import annotations

import math
from collections import deque

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from gatekeeper.audiosocket.interfaces import IAudioSocketLeg
from gatekeeper.audiosocket.wire import Kind

__all__ = [
    "LatenessHistogram",
    "LegGone",
    "OutboundStream",
    "Pacer",
    "PlaybackInterrupted",
]

FRAME_INTERVAL = 0.020
# Deadlines are sums of floats; a tick that fires "at" a deadline may see a
# clock a hair before it.  A microsecond is far below anything audible.
_EPSILON = 1e-6

# Upper bounds of the lateness buckets, in seconds; fine where the 5 ms goal is.
LATENESS_BUCKETS: tuple[float, ...] = (
    0.00025, 0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075,
    0.010, 0.015, 0.020, 0.030, 0.050, 0.100, 0.250, 0.500, 1.0, math.inf,
)  # fmt: skip


class PlaybackInterrupted(Exception):
    """The audio was dropped before it was all sent (barge-in)."""


class LegGone(Exception):
    """The leg left the pacer before the audio was all sent."""


@define
class LatenessHistogram:
    """How late outbound frames left, in cumulative-friendly buckets."""

    bounds: tuple[float, ...] = LATENESS_BUCKETS
    counts: list[int] = field(factory=lambda: [0] * len(LATENESS_BUCKETS))
    total: int = 0
    sum: float = 0.0
    max: float = 0.0

    def observe(self, seconds: float, frames: int = 1) -> None:
        for i, bound in enumerate(self.bounds):
            if seconds <= bound:
                self.counts[i] += frames
                break
        self.total += frames
        self.sum += seconds * frames
        if seconds > self.max:
            self.max = seconds

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding the q-quantile (0 when empty)."""
        if not self.total:
            return 0.0
        rank = q * self.total
        seen = 0
        for bound, count in zip(self.bounds, self.counts, strict=True):
            seen += count
            if seen >= rank:
                return min(bound, self.max)
        return self.max

    def reset(self) -> None:
        self.counts = [0] * len(self.bounds)
        self.total = 0
        self.sum = 0.0
        self.max = 0.0


class OutboundStream:
    """
    One leg's outbound audio: a queue the pacer drains a frame per tick.

    Audio is raw signed 16-bit little-endian PCM at :attr:`kind`'s rate.
    """

    def __init__(
        self, pacer: Pacer, leg: IAudioSocketLeg, kind: Kind, max_queued: int
    ) -> None:
        self.pacer = pacer
        self.leg = leg
        self.max_queued = max_queued
        self.slot = -1
        self.overflowed_bytes = 0
        self._queue = bytearray()
        self._read = 0  # offset of the next unsent byte in _queue
        self._sent_total = 0  # bytes of queued audio sent since attach
        self._queued_total = 0  # bytes of audio ever queued since attach
        self._plays: deque[tuple[int, Deferred[None]]] = deque()
        self.kind = kind

    @property
    def kind(self) -> Kind:
        return self._kind

    @kind.setter
    def kind(self, kind: Kind) -> None:
        self._kind = kind
        self.frame_bytes = kind.frame_bytes
        self._silence = bytes(self.frame_bytes)

    @property
    def queued_bytes(self) -> int:
        return len(self._queue) - self._read

    def enqueue(self, pcm: bytes) -> None:
        """
        Queue audio with no one waiting on it (echo, bridged talk).

        Bounded by ``max_queued``: audio that would go past it is dropped and
        counted, so a stalled or flooding peer cannot grow our memory.
        """
        room = self.max_queued - self.queued_bytes
        if len(pcm) > room:
            self.overflowed_bytes += len(pcm) - max(room, 0)
            pcm = pcm[: max(room, 0)]
        self._append(pcm)

    def play(self, pcm: bytes) -> Deferred[None]:
        """Queue audio; the Deferred fires once its last frame has been sent."""
        done: Deferred[None] = Deferred()
        if self.slot < 0:
            done.errback(LegGone("the leg has left the pacer"))
            return done
        self._append(pcm)
        if self._queued_total == self._sent_total:
            done.callback(None)
        else:
            self._plays.append((self._queued_total, done))
        return done

    def interrupt(self) -> None:
        """Drop queued audio; pending plays fail with PlaybackInterrupted."""
        self._drop(PlaybackInterrupted("playback interrupted"))

    def _append(self, pcm: bytes) -> None:
        if pcm:
            self._queue += pcm
            self._queued_total += len(pcm)

    def _drop(self, why: Exception) -> None:
        self._sent_total = self._queued_total
        self._queue.clear()
        self._read = 0
        plays, self._plays = self._plays, deque()
        for _, done in plays:
            done.errback(why)

    def _send_next(self) -> None:
        """Send this tick's frame: queued audio, padded with silence if short."""
        size = self.frame_bytes
        read = self._read
        available = len(self._queue) - read
        if not available:
            self.leg.send_audio(self._kind, self._silence)
            return
        if available >= size:
            payload = bytes(self._queue[read : read + size])
            sent = size
        else:
            payload = bytes(self._queue[read:]) + self._silence[available:]
            sent = available
        read += sent
        self._sent_total += sent
        if read == len(self._queue):
            self._queue.clear()
            read = 0
        elif read > 65536:
            del self._queue[:read]
            read = 0
        self._read = read
        self.leg.send_audio(self._kind, payload)
        plays = self._plays
        while plays and plays[0][0] <= self._sent_total:
            plays.popleft()[1].callback(None)


class Pacer:
    """The shared 20 ms clock; see the module docstring."""

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        interval: float = FRAME_INTERVAL,
        slots: int = 20,
        max_catchup: int = 2,
        max_queued_seconds: float = 1.0,
    ) -> None:
        if slots < 1 or max_catchup < 1 or interval <= 0:
            raise ValueError("interval, slots and max_catchup must be positive")
        self.clock = clock
        self.interval = interval
        self.max_catchup = max_catchup
        self.max_queued_seconds = max_queued_seconds
        self.lateness = LatenessHistogram()
        self.frames_sent = 0
        self.frames_skipped = 0
        self._slot_seconds = interval / slots
        self._slots: list[list[OutboundStream]] = [[] for _ in range(slots)]
        self._count = 0
        self._t0 = 0.0
        self._next = 0  # index of the next slot deadline to serve
        self._call: IDelayedCall | None = None
        self._ticking = False

    def __len__(self) -> int:
        return self._count

    def attach(self, leg: IAudioSocketLeg, kind: Kind = Kind.SLIN) -> OutboundStream:
        """Start sending to ``leg``; its first frame leaves at its slot's next turn."""
        max_queued = int(kind.sample_rate * 2 * self.max_queued_seconds)
        stream = OutboundStream(self, leg, kind, max_queued)
        slot = min(range(len(self._slots)), key=lambda i: len(self._slots[i]))
        stream.slot = slot
        self._slots[slot].append(stream)
        self._count += 1
        if self._call is None and not self._ticking:
            self._t0 = self.clock.seconds()
            self._next = 0
            self._schedule(self._t0)
        return stream

    def detach(self, stream: OutboundStream) -> None:
        """Stop sending to the stream's leg; pending plays fail with LegGone."""
        if stream.slot < 0:
            return
        self._slots[stream.slot].remove(stream)
        stream.slot = -1
        self._count -= 1
        stream._drop(LegGone("the leg has left the pacer"))
        if not self._count and self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None

    def stop(self) -> None:
        for slot in self._slots:
            for stream in list(slot):
                self.detach(stream)

    def _deadline(self, j: int) -> float:
        return self._t0 + j * self._slot_seconds

    def _schedule(self, now: float) -> None:
        """Arm the timer for the next slot that has a leg in it."""
        slots = self._slots
        n = len(slots)
        j = self._next
        for _ in range(n):
            if slots[j % n]:
                break
            j += 1
        self._next = j
        self._call = self.clock.callLater(max(0.0, self._deadline(j) - now), self._tick)

    def _tick(self) -> None:
        self._call = None
        now = self.clock.seconds()
        slots = self._slots
        n = len(slots)
        j = self._next
        # Far behind: skip the deadlines older than max_catchup periods rather
        # than burst them out, so no leg gets more than max_catchup frames at once.
        threshold = now - self.max_catchup * self.interval
        if self._deadline(j) <= threshold + _EPSILON:
            skip_to = (
                math.floor((threshold - self._t0) / self._slot_seconds + _EPSILON) + 1
            )
            for k in range(j, min(skip_to, j + n * 1000)):
                self.frames_skipped += len(slots[k % n])
            self._log.warn(
                "pacer fell {behind:.1f} ms behind; skipped {slots} slot deadlines",
                behind=(now - self._deadline(j)) * 1000,
                slots=skip_to - j,
            )
            j = skip_to
        lateness = self.lateness
        sent = 0
        self._ticking = True
        try:
            while self._deadline(j) <= now + _EPSILON:
                streams = slots[j % n]
                if streams:
                    lateness.observe(max(0.0, now - self._deadline(j)), len(streams))
                    for stream in list(streams):
                        stream._send_next()
                    sent += len(streams)
                j += 1
        finally:
            self._ticking = False
            self.frames_sent += sent
            self._next = j
            if self._count and self._call is None:
                self._schedule(now)
