"""
In-band DTMF: finding key presses in the audio, and making the tones.

Most Asterisk setups send digits as AudioSocket DTMF frames; an intercom that
sends its keypad as tones inside the audio needs this detector instead.

Detection follows the classic Goertzel design (as in Asterisk's ``dsp.c`` and
spandsp): the audio is cut into blocks of 12.75 ms (102 samples at 8 kHz, the
same duration at any rate, so the filters' bandwidth does not depend on the
leg's rate) and each block's energy is measured at the eight DTMF
frequencies.  Goertzel's recurrence computes one DFT term per frequency; here
the same terms are computed for every block of a chunk at once as one
product with precomputed complex exponentials (``einsum``, not BLAS, whose
threads would spin), which is what makes it cheap in numpy.  A block holds a digit when:

- the strongest row and column frequencies each exceed the other three of
  their group by ``relative_peak`` (8 dB).  Each tone is measured at its
  nominal frequency and 1 % either side and the strongest reading counts, so
  a key detuned by the 1.5 % the standard allows loses almost nothing; its
  rivals are measured at their nominal frequency only;
- the twist is acceptable: the row tone at most 8 dB above the column tone
  (normal twist), the column at most 4 dB above the row (reverse twist);
- the two tones carry at least ``tone_share`` (75 %) of the block's whole
  energy, which is what rejects speech and music: their energy is spread
  over many harmonics, a key press has all of it in two pure tones (91 % at
  10 dB signal-to-noise ratio);
- the signal is louder than ``min_level_dbfs``.

A digit is reported once per key press, as soon as the run of consecutive
blocks holding it carries ``min_duration`` (23 ms) of tone.  A block's tone
share doubles as the part of the block the tone fills (see
:meth:`DtmfDetector._analyse`), so adding shares up measures a tone's length
wherever its edges fall: a tone shorter than 23 ms is never reported and one
of 40 ms or more always is (ITU-T Q.24's limits).  It is not reported again
until two consecutive blocks do not hold it (the key was released).
"""

from __future__ import annotations

import math

import numpy as np
from attrs import frozen
from numpy.typing import ArrayLike, NDArray

from gatekeeper.media.resample import pcm_to_samples

__all__ = [
    "COLUMN_FREQUENCIES",
    "DIGITS",
    "ROW_FREQUENCIES",
    "DtmfDetector",
    "DtmfSettings",
    "dtmf_sequence",
    "dtmf_tone",
]

ROW_FREQUENCIES = (697.0, 770.0, 852.0, 941.0)
COLUMN_FREQUENCIES = (1209.0, 1336.0, 1477.0, 1633.0)
_KEYPAD = ("123A", "456B", "789C", "*0#D")
DIGITS = "".join(_KEYPAD)
_POSITION = {
    digit: (row, column)
    for row, keys in enumerate(_KEYPAD)
    for column, digit in enumerate(keys)
}
BLOCK_SECONDS = 102 / 8000
# Each tone is measured at its nominal frequency and 1 % either side, and the
# strongest counts: a key whose oscillator is off by the 1.5 % the standard
# allows still shows its whole energy, so the energy share test can be strict.
_DETUNING = (-0.01, 0.0, 0.01)


def _db(ratio_db: float) -> float:
    return 10.0 ** (ratio_db / 10.0)


@frozen
class DtmfSettings:
    """Acceptance thresholds; levels and ratios in dB."""

    relative_peak_db: float = 8.0
    normal_twist_db: float = 8.0
    reverse_twist_db: float = 4.0
    tone_share: float = 0.75
    min_level_dbfs: float = -40.0
    min_duration: float = 0.023
    misses_to_end: int = 2


class DtmfDetector:
    """Streaming detector: feed audio of any chunking, get digits as pressed."""

    def __init__(self, sample_rate: int, settings: DtmfSettings | None = None) -> None:
        self.sample_rate = sample_rate
        self.settings = settings or DtmfSettings()
        self._block = round(BLOCK_SECONDS * sample_rate)
        nominal = np.array(ROW_FREQUENCIES + COLUMN_FREQUENCIES)
        frequencies = np.concatenate([nominal * (1 + d) for d in _DETUNING])
        times = np.arange(self._block) / sample_rate
        # One DFT term per frequency, as Goertzel computes it, for all blocks.
        self._basis = np.exp(-2j * np.pi * np.outer(times, frequencies))
        self._partial = np.zeros(0, dtype=np.float64)
        self._candidate: str | None = None  # the last block's digit
        self._run_blocks = 0.0  # blocks' worth of tone in the current run
        self._misses = 0
        self._pressed: str | None = None  # the digit reported, key still down
        settings = self.settings
        self._relative_peak = _db(settings.relative_peak_db)
        self._normal_twist = _db(settings.normal_twist_db)
        self._reverse_twist = _db(settings.reverse_twist_db)
        self._min_blocks = settings.min_duration / BLOCK_SECONDS
        self._min_energy = (
            _db(settings.min_level_dbfs) * 32768.0**2 * self._block
        )  # block energy of a signal at that level

    def feed_pcm(self, pcm: bytes) -> list[str]:
        """:meth:`feed` on 16-bit little-endian PCM bytes."""
        return self.feed(pcm_to_samples(pcm))

    def feed(self, samples: ArrayLike) -> list[str]:
        """The digits whose key press was recognised in this audio."""
        signal = np.asarray(samples, dtype=np.float64)
        if self._partial.size:
            signal = np.concatenate((self._partial, signal))
        whole = signal.size - signal.size % self._block
        self._partial = signal[whole:].copy()
        if not whole:
            return []
        digits: list[str] = []
        candidates, shares = self._analyse(signal[:whole])
        for candidate, share in zip(candidates, shares.tolist(), strict=True):
            pressed = self._track(candidate, share)
            if pressed is not None:
                digits.append(pressed)
        return digits

    def classify(self, signal: ArrayLike) -> list[str | None]:
        """The digit each whole block of ``signal`` holds, if any (stateless)."""
        return self._analyse(np.asarray(signal, dtype=np.float64))[0]

    def _analyse(
        self, signal: NDArray[np.float64]
    ) -> tuple[list[str | None], NDArray[np.float64]]:
        """
        Each block's digit or None, and the share of its energy in the tones.

        For a tone filling ``m`` of the block's ``N`` samples the DFT term
        grows as ``m**2`` and the plain energy as ``m``, so the share is also
        the part of the block the tone fills: :meth:`_track` adds shares up
        to measure how long a key has been pressed.
        """
        whole = signal.size - signal.size % self._block
        blocks = np.asarray(signal[:whole], dtype=np.float64).reshape(-1, self._block)
        # Mean removal keeps a DC offset out of the energy comparison.
        blocks = blocks - blocks.mean(axis=1, keepdims=True)
        # |X(f)|^2 * 2/N is the energy of a sinusoid at f in the block.
        # einsum rather than @: OpenBLAS runs small matrix-vector products on
        # spinning threads, which costs a single-threaded server whole cores.
        terms = np.einsum("nk,kf->nf", blocks, self._basis)
        terms = np.abs(terms) ** 2 * (2.0 / self._block)
        terms = terms.reshape(blocks.shape[0], len(_DETUNING), 8)
        tone = terms.max(axis=1)
        total = np.einsum("ij,ij->i", blocks, blocks)
        index = np.arange(blocks.shape[0])
        row = tone[:, :4].argmax(axis=1)
        column = tone[:, 4:].argmax(axis=1)
        row_peak = tone[index, row]
        column_peak = tone[index, 4 + column]
        # The competitors are measured at their nominal frequency only: a
        # detuned key must not lend its energy to the next row's margin.
        others = terms[:, _DETUNING.index(0.0), :].copy()
        others[index, row] = 0.0
        others[index, 4 + column] = 0.0
        row_rival = others[:, :4].max(axis=1)
        column_rival = others[:, 4:].max(axis=1)
        accepted = (
            (total >= self._min_energy)
            & (row_peak >= self._relative_peak * row_rival)
            & (column_peak >= self._relative_peak * column_rival)
            & (row_peak <= self._normal_twist * column_peak)
            & (column_peak <= self._reverse_twist * row_peak)
            & (row_peak + column_peak >= self.settings.tone_share * total)
        )
        digits = [
            _KEYPAD[r][c] if ok else None
            for r, c, ok in zip(
                row.tolist(), column.tolist(), accepted.tolist(), strict=True
            )
        ]
        return digits, (row_peak + column_peak) / np.maximum(total, 1e-9)

    def _track(self, candidate: str | None, share: float) -> str | None:
        """One block's verdict into key-press state; a digit when one begins."""
        if candidate is not None and candidate == self._candidate:
            self._run_blocks += share
        else:
            self._run_blocks = share if candidate else 0.0
        self._candidate = candidate
        if self._pressed is not None:
            if candidate == self._pressed:
                self._misses = 0
                return None
            self._misses += 1
            if self._misses < self.settings.misses_to_end:
                return None
            self._pressed = None
        if candidate is not None and self._run_blocks >= self._min_blocks:
            self._pressed = candidate
            self._misses = 0
            return candidate
        return None


def dtmf_tone(
    digit: str,
    sample_rate: int,
    duration: float = 0.1,
    level_dbfs: float = -10.0,
    *,
    twist_db: float = 0.0,
    frequency_error: float = 0.0,
) -> NDArray[np.float64]:
    """
    The two tones of one key, as float samples at int16 scale.

    ``level_dbfs`` is each tone's peak level; ``twist_db`` raises the row tone
    over the column tone; ``frequency_error`` detunes both (0.015 is the 1.5 %
    the standard allows).
    """
    try:
        row, column = _POSITION[digit.upper()]
    except KeyError:
        raise ValueError(f"{digit!r} is not a DTMF digit") from None
    times = np.arange(round(duration * sample_rate)) / sample_rate
    amplitude = 32767 * 10 ** (level_dbfs / 20)
    detune = 1.0 + frequency_error
    low = amplitude * 10 ** (twist_db / 40)
    high = amplitude * 10 ** (-twist_db / 40)
    return low * np.sin(
        2 * math.pi * ROW_FREQUENCIES[row] * detune * times
    ) + high * np.sin(2 * math.pi * COLUMN_FREQUENCIES[column] * detune * times)


def dtmf_sequence(
    digits: str,
    sample_rate: int,
    *,
    on: float = 0.1,
    off: float = 0.1,
    level_dbfs: float = -10.0,
) -> NDArray[np.int16]:
    """Key presses one after another, each followed by ``off`` of silence."""
    gap = np.zeros(round(off * sample_rate))
    parts: list[NDArray[np.float64]] = []
    for digit in digits:
        parts += [dtmf_tone(digit, sample_rate, on, level_dbfs), gap]
    if not parts:
        return np.zeros(0, dtype=np.int16)
    return np.rint(np.concatenate(parts)).astype(np.int16)
