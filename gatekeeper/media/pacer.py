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
from gatekeeper.audiosocket.wire import Kind, encode_audio

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

    Audio is raw signed 16-bit little-endian PCM at :attr:`kind`'s rate.  The
    queue holds the caller's buffers as they are (a prompt's PCM is shared,
    never copied in); each tick's frame is the stream's header, made once by
    :func:`~gatekeeper.audiosocket.wire.encode_audio` for the kind and frame
    size, plus the next slice, so every frame is valid by construction and
    goes out with one ``send_frame``.
    """

    def __init__(
        self, pacer: Pacer, leg: IAudioSocketLeg, kind: Kind, max_queued: int
    ) -> None:
        self.pacer = pacer
        self.leg = leg
        self.max_queued = max_queued
        self.slot = -1
        self.overflowed_bytes = 0
        self._chunks: deque[bytes] = deque()
        self._offset = 0  # into the first chunk
        self._queued = 0  # bytes not yet sent
        self._sent_total = 0  # bytes of queued audio sent since attach
        self._queued_total = 0  # bytes of audio ever queued since attach
        self._plays: deque[tuple[int, Deferred[None]]] = deque()
        self._send_frame = leg.send_frame
        self.set_kind(kind)

    def set_kind(self, kind: Kind) -> None:
        """Send at another rate (the leg's audio kind changed)."""
        self.kind = kind
        self.frame_bytes = size = kind.frame_bytes
        silence_frame = encode_audio(kind, bytes(size))
        self._header = silence_frame[:3]
        self._silence_frame = silence_frame

    @property
    def queued_bytes(self) -> int:
        return self._queued

    def enqueue(self, pcm: bytes) -> None:
        """
        Queue audio with no one waiting on it (echo, bridged talk).

        Bounded by ``max_queued``: audio that would go past it is dropped and
        counted, so a stalled or flooding peer cannot grow our memory.
        """
        size = len(pcm)
        if size > self.max_queued - self._queued:
            room = max(self.max_queued - self._queued, 0)
            self.overflowed_bytes += size - room
            pcm = pcm[:room]
            size = room
        if size:
            if type(pcm) is not bytes:
                pcm = bytes(pcm)  # our own copy: the caller may reuse its buffer
            self._chunks.append(pcm)
            self._queued += size
            self._queued_total += size

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
            if type(pcm) is not bytes:
                # Our own copy: the caller may reuse its buffer.
                pcm = bytes(pcm)
            self._chunks.append(pcm)
            self._queued += len(pcm)
            self._queued_total += len(pcm)

    def _drop(self, why: Exception) -> None:
        self._sent_total = self._queued_total
        self._chunks.clear()
        self._offset = 0
        self._queued = 0
        plays, self._plays = self._plays, deque()
        for _, done in plays:
            done.errback(why)

    def _send_next(self) -> None:
        """Send this tick's frame: queued audio, padded with silence if short."""
        if not self._queued:
            self._send_frame(self._silence_frame)
            return
        size = self.frame_bytes
        chunks = self._chunks
        head = chunks[0]
        offset = self._offset
        end = offset + size
        length = len(head)
        if end == length and not offset:  # an echoed frame: the buffer whole
            frame = self._header + head
            chunks.popleft()
            taken = size
        elif end <= length:  # a prompt: the next slice of one buffer
            frame = self._header + head[offset:end]
            if end == length:
                chunks.popleft()
                end = 0
            self._offset = end
            taken = size
        else:
            parts = [self._header]
            taken = 0
            while taken < size and chunks:
                head = chunks[0]
                piece = head[offset : offset + size - taken]
                parts.append(piece)
                taken += len(piece)
                offset += len(piece)
                if offset >= len(head):
                    chunks.popleft()
                    offset = 0
            self._offset = offset
            if taken < size:
                parts.append(self._silence_frame[3 + taken :])
            frame = b"".join(parts)
        self._queued -= taken
        self._sent_total += taken
        self._send_frame(frame)
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
        lead: float = 0.0,
    ) -> None:
        if slots < 1 or max_catchup < 1 or interval <= 0:
            raise ValueError("interval, slots and max_catchup must be positive")
        if not 0 <= lead < interval / slots:
            raise ValueError("lead must be at least 0 and shorter than a slot")
        # epoll waits whole milliseconds, rounded up, so a timer armed for a
        # deadline fires up to 1 ms after it; arming it ``lead`` early and
        # serving every slot due within ``lead`` centres the error on zero.
        self.lead = lead
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
        now = self.clock.seconds()
        if self._call is None and not self._ticking:
            # The first leg starts the schedule.
            self._t0 = now
            self._next = 0
        slot, deadline_index = self._slot_for_new_leg(now)
        stream.slot = slot
        self._slots[slot].append(stream)
        self._count += 1
        if self._ticking:
            pass  # the tick in progress arms the timer for what comes next
        elif self._call is None:
            self._schedule(now)
        elif deadline_index < self._next:
            # Due before the slot the timer waits for: wake for it instead.
            self._call.cancel()
            self._next = deadline_index
            self._call = self.clock.callLater(
                max(0.0, self._deadline(deadline_index) - self.lead - now), self._tick
            )
        return stream

    def _slot_for_new_leg(self, now: float) -> tuple[int, int]:
        """
        The least-loaded slot that comes round soonest, and its next deadline.

        Least loaded keeps the bursts even; soonest means a new leg's first
        frame (its greeting, a resident's announcement) leaves within a slot
        rather than up to a whole period later.
        """
        slots = self._slots
        n = len(slots)
        fewest = min(len(slot) for slot in slots)
        due = max(0, math.ceil((now - self._t0) / self._slot_seconds - _EPSILON))
        for k in range(n):
            if len(slots[(due + k) % n]) == fewest:
                return (due + k) % n, due + k
        raise AssertionError("unreachable: some slot has the fewest legs")

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
        self._call = self.clock.callLater(
            max(0.0, self._deadline(j) - self.lead - now), self._tick
        )

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
            while self._deadline(j) <= now + self.lead + _EPSILON:
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
