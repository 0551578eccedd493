"""
Anti-aliased sample-rate conversion of 16-bit PCM, in one piece or streamed.

A leg may speak any AudioSocket rate (8 kHz to 192 kHz) and a prompt file may
have been written at yet another, so audio crosses rates in three places:
prompts loaded at start, recordings, and the bridge between two legs.

The converter is a rational polyphase FIR, numpy only.  Changing the rate by
``up/down`` means (conceptually) inserting ``up - 1`` zeros between samples,
low-pass filtering at the lower of the two Nyquist frequencies and keeping
every ``down``-th sample.  Only the filter taps that meet a real input sample
are ever multiplied: the filter is stored as ``up`` phases of ``K`` taps each,
and every output sample is one dot product of a phase with the last ``K``
input samples, computed for a whole chunk at once as a gathered matrix.

The filter is a Kaiser-windowed sinc whose pass band reaches 88 % of the
lower Nyquist frequency and whose stop band (80 dB down) starts at that
Nyquist frequency, so nothing above it folds back into the output: a 3.5 kHz
tone passes 16 kHz -> 8 kHz untouched, a 6 kHz tone does not turn into 2 kHz.
(``scipy.signal.resample_poly``'s default filter is -6 dB at Nyquist with a
stop band near 50 dB, and it keeps no state between calls; this module needs
neither scipy nor a second code path for streaming.)

:func:`resample` converts a whole signal with the filter's delay removed.
:class:`StreamResampler` converts a stream chunk by chunk (20 ms frames in the
bridge); it carries the last input samples over, so the output is exactly the
one a single call on the whole stream would give, delayed by the filter's
group delay (under 6 ms), with no click at frame edges.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "AUDIOSOCKET_RATES",
    "StreamResampler",
    "pcm_to_samples",
    "resample",
    "resample_pcm",
    "samples_to_pcm",
]

AUDIOSOCKET_RATES: tuple[int, ...] = (
    8000,
    12000,
    16000,
    24000,
    32000,
    44100,
    48000,
    96000,
    192000,
)

# Filter design, as fractions of the lower of the two Nyquist frequencies.
_PASS_EDGE = 0.88
_STOP_EDGE = 1.0
_STOP_ATTENUATION_DB = 80.0
# Beyond this the filter would need hundreds of thousands of taps: such a pair
# of rates (8000 and 8001 Hz, say) is a configuration mistake, not a use case.
_MAX_FACTOR = 2000

_INT16 = np.dtype("<i2")


def pcm_to_samples(pcm: bytes | bytearray | memoryview) -> NDArray[np.int16]:
    """Signed 16-bit little-endian PCM as an int16 array (a read-only view)."""
    if len(pcm) % 2:
        raise ValueError(f"PCM of {len(pcm)} bytes is not whole 16-bit samples")
    return np.frombuffer(pcm, dtype=_INT16)


def samples_to_pcm(samples: ArrayLike) -> bytes:
    """Samples (any numeric dtype, int16 scale) as 16-bit little-endian PCM."""
    return _to_int16(np.asarray(samples)).astype(_INT16, copy=False).tobytes()


def _to_int16(samples: NDArray) -> NDArray[np.int16]:
    """Round and saturate: filtered audio may overshoot full scale slightly."""
    if samples.dtype == np.int16:
        return samples
    return np.clip(np.rint(samples), -32768, 32767).astype(np.int16)


@functools.lru_cache(maxsize=64)
def _ratio(from_rate: int, to_rate: int) -> tuple[int, int]:
    for rate in (from_rate, to_rate):
        if not isinstance(rate, int) or rate <= 0:
            raise ValueError(f"sample rate {rate!r} is not a positive integer")
    divisor = math.gcd(from_rate, to_rate)
    up, down = to_rate // divisor, from_rate // divisor
    if max(up, down) > _MAX_FACTOR:
        raise ValueError(
            f"cannot convert {from_rate} Hz to {to_rate} Hz: the ratio "
            f"{up}/{down} needs too long a filter"
        )
    return up, down


@functools.lru_cache(maxsize=64)
def _design(up: int, down: int) -> tuple[NDArray[np.float64], int]:
    """
    The low-pass filter split into ``up`` phases, and its delay.

    ``phases[p, k]`` (shape ``(up, K)``) is tap ``p + k * up``, scaled by
    ``up`` so that the zero-stuffed signal keeps its level; the delay is in
    samples at the up-sampled rate.  Cached: one design per rate pair.
    """
    factor = max(up, down)
    # Kaiser's estimates (Oppenheim & Schafer 7.6): filter order from the
    # transition width (radians per up-sampled sample), beta from attenuation.
    transition = math.pi * (_STOP_EDGE - _PASS_EDGE) / factor
    half = math.ceil((_STOP_ATTENUATION_DB - 7.95) / (2.285 * transition)) // 2 + 1
    taps = np.arange(-half, half + 1, dtype=np.float64)
    cutoff = (_PASS_EDGE + _STOP_EDGE) / 2 / (2 * factor)  # cycles per sample
    beta = 0.1102 * (_STOP_ATTENUATION_DB - 8.7)
    h = 2 * cutoff * np.sinc(2 * cutoff * taps) * np.kaiser(taps.size, beta)
    h *= up / h.sum()
    per_phase = -(-h.size // up)
    padded = np.zeros(per_phase * up)
    padded[: h.size] = h
    phases = np.ascontiguousarray(padded.reshape(per_phase, up).T)
    phases.setflags(write=False)
    return phases, half


def _polyphase(
    history: NDArray[np.float64],
    first_input: int,
    positions: NDArray[np.int64],
    phases: NDArray[np.float64],
    up: int,
) -> NDArray[np.float64]:
    """
    Output samples at ``positions`` (indices on the up-sampled time axis).

    ``history[j]`` is input sample ``first_input + j``; every position must
    have its last ``K`` input samples inside ``history``.
    """
    per_phase = phases.shape[1]
    newest = positions // up - first_input
    gather = newest[:, None] - np.arange(per_phase)
    return np.einsum("nk,nk->n", phases[positions % up], history[gather])


def resample(samples: ArrayLike, from_rate: int, to_rate: int) -> NDArray[np.int16]:
    """
    A whole signal at ``to_rate``, aligned in time with the input.

    The output has ``ceil(len * to_rate / from_rate)`` samples.
    """
    signal = np.asarray(samples)
    if signal.ndim != 1:
        raise ValueError(f"expected mono samples, got shape {signal.shape}")
    up, down = _ratio(from_rate, to_rate)
    if up == down:
        return _to_int16(signal).copy()
    phases, delay = _design(up, down)
    per_phase = phases.shape[1]
    count = -(-signal.size * up // down)
    if count == 0:
        return np.zeros(0, dtype=np.int16)
    # Output n sits at n*down on the up-sampled axis; shifting by the
    # filter's delay centres the symmetric filter on it.
    positions = np.arange(count, dtype=np.int64) * down + delay
    margin = per_phase + 1
    padded = np.zeros(margin + signal.size + delay // up + 2, dtype=np.float64)
    padded[margin : margin + signal.size] = signal
    return _to_int16(_polyphase(padded, -margin, positions, phases, up))


def resample_pcm(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    """:func:`resample` on 16-bit little-endian PCM bytes."""
    if from_rate == to_rate:
        pcm_to_samples(pcm)  # same validation either way
        return bytes(pcm)
    return samples_to_pcm(resample(pcm_to_samples(pcm), from_rate, to_rate))


class StreamResampler:
    """
    Converts a stream chunk by chunk, keeping the filter's state between chunks.

    Each chunk of ``n`` input samples yields the output samples whose inputs
    are now all known: over a stream of 20 ms frames at AudioSocket rates that
    is exactly one 20 ms frame out per frame in.
    """

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self.from_rate = from_rate
        self.to_rate = to_rate
        self._up, self._down = _ratio(from_rate, to_rate)
        self._passthrough = self._up == self._down
        self._phases, self._delay = _design(self._up, self._down)
        per_phase = self._phases.shape[1]
        # The last K-1 input samples, zeros before the stream starts.
        self._history = np.zeros(per_phase - 1, dtype=np.float64)
        self._consumed = 0  # input samples seen, modulo a multiple of `down`
        self._produced = 0  # output samples made, matching `_consumed`

    @property
    def delay(self) -> float:
        """Seconds by which the output lags the input."""
        if self._passthrough:
            return 0.0
        return self._delay / (self.from_rate * self._up)

    def reset(self) -> None:
        """Forget the past: the next chunk starts a new stream."""
        self._history[:] = 0.0
        self._consumed = 0
        self._produced = 0

    def feed(self, samples: ArrayLike) -> NDArray[np.int16]:
        """The output made available by one more chunk of input."""
        chunk = np.asarray(samples)
        if chunk.ndim != 1:
            raise ValueError(f"expected mono samples, got shape {chunk.shape}")
        if self._passthrough:
            return _to_int16(chunk).copy()
        up, down = self._up, self._down
        history = np.concatenate((self._history, chunk.astype(np.float64)))
        first_input = self._consumed - self._history.size
        self._consumed += chunk.size
        # Output n needs input floor(n*down/up): all n with n*down < consumed*up.
        end = -(-self._consumed * up // down)
        positions = np.arange(self._produced, end, dtype=np.int64) * down
        out = _polyphase(history, first_input, positions, self._phases, up)
        self._produced = end
        self._history = history[history.size - self._history.size :].copy()
        # Keep the counters small on a long call: shift both by whole periods.
        periods = self._consumed // down
        if periods > 1_000_000:
            self._consumed -= periods * down
            self._produced -= periods * up
        return _to_int16(out)

    def feed_pcm(self, pcm: bytes) -> bytes:
        """:meth:`feed` on 16-bit little-endian PCM bytes."""
        return samples_to_pcm(self.feed(pcm_to_samples(pcm)))
