"""
Two-way talk between the visitor and the resident.

While they talk, whatever one leg sends us goes out on the other leg: each
:class:`AudioPath` takes audio heard on one leg, converts it to the other
leg's rate when the two differ (a streaming resampler, so 20 ms frames join
without clicks) and appends it to that leg's outbound stream, which the
pacer plays out one 20 ms frame per tick.

Gaps and bursts are the pacer's and this module's to hide:

- a frame that never arrives leaves the other leg's queue empty, and the
  pacer sends silence for that tick: never stale or partial audio.  Only
  whole 20 ms frames are queued (a short frame waits for the next one), so
  the pacer never pads the middle of a word with silence;
- a leg whose frames arrive faster than they are played (a burst after a
  network stall, or a sender whose clock runs fast) would pile audio up in
  the other leg's queue and add delay for the rest of the call, so each path
  keeps at most ``max_backlog`` seconds queued and drops what arrives beyond
  it.  Dropped audio is counted for the metrics.

The bridge needs only three things of an outbound stream (``kind``,
``queued_bytes``, ``enqueue``), stated as :class:`AudioSink`, so tests use a
fake and the bridge does not depend on the pacer's module.
"""

from __future__ import annotations

from typing import Protocol

from twisted.logger import Logger

from gatekeeper.audiosocket.wire import Kind
from gatekeeper.media.resample import StreamResampler, pcm_to_samples, samples_to_pcm

__all__ = ["DEFAULT_MAX_BACKLOG", "AudioPath", "AudioSink", "Bridge"]

# Five frames: room for the bursts Asterisk's jitter produces, no more.
DEFAULT_MAX_BACKLOG = 0.1
FRAME_SECONDS = 0.02


class AudioSink(Protocol):
    """What the bridge uses of :class:`gatekeeper.media.pacer.OutboundStream`."""

    @property
    def kind(self) -> Kind: ...

    @property
    def queued_bytes(self) -> int: ...

    def enqueue(self, pcm: bytes) -> None: ...


class AudioPath:
    """One direction of a bridge: audio heard on a leg, played into a sink."""

    _log = Logger()

    def __init__(
        self, sink: AudioSink, *, max_backlog: float = DEFAULT_MAX_BACKLOG
    ) -> None:
        self.sink = sink
        self.max_backlog_frames = max(1, round(max_backlog / FRAME_SECONDS))
        self._resampler: StreamResampler | None = None
        self._partial = b""  # less than one sink frame, awaiting the rest
        self._partial_kind: Kind | None = None  # the rate those bytes are at
        self.closed = False
        self.forwarded_bytes = 0
        self.dropped_bytes = 0

    def feed(self, pcm: bytes, sample_rate: int) -> None:
        """Audio heard at ``sample_rate``, to be played into the sink."""
        if self.closed or not pcm:
            return
        if len(pcm) % 2:
            # A torn sample would shift every later sample by one byte:
            # that is the garbage the other leg must never hear.
            self._log.warn(
                "dropping {size}-byte audio: not whole 16-bit samples", size=len(pcm)
            )
            return
        kind = self.sink.kind  # read each time: a leg may change its rate
        if kind is not self._partial_kind:
            self._partial, self._partial_kind = b"", kind
        if sample_rate != kind.sample_rate:
            resampler = self._resampler
            if (
                resampler is None
                or resampler.from_rate != sample_rate
                or resampler.to_rate != kind.sample_rate
            ):
                resampler = self._resampler = StreamResampler(
                    sample_rate, kind.sample_rate
                )
            out = samples_to_pcm(resampler.feed(pcm_to_samples(pcm)))
        else:
            out = bytes(pcm)
        # Only whole frames go to the sink: the pacer pads a short queue with
        # silence, which mid-talk would be a gap in the middle of a word.
        out = self._partial + out
        whole = len(out) - len(out) % kind.frame_bytes
        out, self._partial = out[:whole], out[whole:]
        if not out:
            return
        if self.sink.queued_bytes + len(out) > self.max_backlog_frames * (
            kind.frame_bytes
        ):
            self.dropped_bytes += len(out)
            return
        self.sink.enqueue(out)
        self.forwarded_bytes += len(out)

    def close(self) -> None:
        """Stop forwarding; audio that is already queued still plays."""
        self.closed = True
        self._resampler = None
        self._partial = b""


class Bridge:
    """The visitor and the resident hear each other, each at their own rate."""

    def __init__(
        self,
        visitor: AudioSink,
        resident: AudioSink,
        *,
        max_backlog: float = DEFAULT_MAX_BACKLOG,
    ) -> None:
        self.to_resident = AudioPath(resident, max_backlog=max_backlog)
        self.to_visitor = AudioPath(visitor, max_backlog=max_backlog)

    def from_visitor(self, kind: Kind, pcm: bytes) -> None:
        """An audio frame the visitor's leg sent us."""
        self.to_resident.feed(pcm, kind.sample_rate)

    def from_resident(self, kind: Kind, pcm: bytes) -> None:
        """An audio frame the resident's leg sent us."""
        self.to_visitor.feed(pcm, kind.sample_rate)

    @property
    def closed(self) -> bool:
        return self.to_resident.closed

    @property
    def dropped_bytes(self) -> int:
        """Audio dropped in both directions to keep the delay bounded."""
        return self.to_resident.dropped_bytes + self.to_visitor.dropped_bytes

    def close(self) -> None:
        self.to_resident.close()
        self.to_visitor.close()
