"""
Synthetic test signals: speech-like sound and noise at a chosen level.

Real recordings would make the tests depend on files nobody can regenerate;
these are made from a seed.  "Speech-like" means what matters to a voice
detector and a DTMF detector: syllables of 80-300 ms with a rising and
falling envelope, voiced ones made of a gliding fundamental (85-260 Hz) and
its harmonics shaped by three formants, unvoiced ones of band-limited noise,
with pauses between words.  It is the classic source of DTMF "talk-off":
harmonics that land on DTMF frequencies.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["level_dbfs", "scale_to_dbfs", "speech_like", "white_noise"]

_FULL_SCALE = 32768.0


def level_dbfs(samples: NDArray) -> float:
    """RMS level of ``samples`` in dB below a full-scale square wave."""
    power = np.mean(np.asarray(samples, dtype=np.float64) ** 2)
    return float(10 * np.log10(max(power, 1e-20) / _FULL_SCALE**2))


def scale_to_dbfs(samples: NDArray, dbfs: float) -> NDArray[np.float64]:
    """``samples`` rescaled to an RMS level of ``dbfs``."""
    signal = np.asarray(samples, dtype=np.float64)
    return signal * 10 ** ((dbfs - level_dbfs(signal)) / 20)


def white_noise(
    rng: np.random.Generator, seconds: float, rate: int, dbfs: float
) -> NDArray[np.float64]:
    """Gaussian white noise at an RMS level of ``dbfs``."""
    sigma = _FULL_SCALE * 10 ** (dbfs / 20)
    return rng.normal(0.0, sigma, round(seconds * rate))


def _vocal_tract_gain(frequencies: NDArray, formants: NDArray) -> NDArray:
    """Amplitude response of a cascade of two-pole resonators (Klatt's model)."""
    gain = np.ones_like(frequencies)
    for centre, bandwidth in formants:
        ratio = frequencies / centre
        gain /= np.sqrt(
            (1 - ratio**2) ** 2 + (frequencies * bandwidth / centre**2) ** 2
        )
    return gain


def _syllable(rng: np.random.Generator, rate: int) -> NDArray[np.float64]:
    count = round(rng.uniform(0.08, 0.3) * rate)
    times = np.arange(count) / rate
    envelope = np.sin(np.pi * np.arange(count) / count) ** rng.uniform(0.5, 2)
    if rng.random() < 0.2:  # unvoiced: noise through one broad resonance
        noise = rng.normal(0, 1, count)
        spectrum = np.fft.rfft(noise)
        bins = np.fft.rfftfreq(count, 1 / rate)
        centre = rng.uniform(2000, min(3800, rate / 2 - 200))
        spectrum *= 1 / (1 + ((bins - centre) / 600) ** 2)
        return envelope * np.fft.irfft(spectrum, count) * 0.3
    start, end = rng.uniform(85, 260), rng.uniform(85, 260)
    pitch = np.linspace(start, end, count) * (
        1 + 0.02 * np.sin(2 * np.pi * rng.uniform(3, 7) * times)
    )
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    # Formant frequencies and bandwidths (Hz) in the ranges Peterson and
    # Barney measured; the glottal source falls 12 dB per octave and lip
    # radiation adds 6, so harmonic k has amplitude 1/k before the tract.
    formants = np.array(
        [
            (rng.uniform(270, 850), rng.uniform(50, 120)),
            (rng.uniform(850, 2300), rng.uniform(70, 200)),
            (rng.uniform(2300, 3300), rng.uniform(110, 300)),
        ]
    )
    mean_pitch = pitch.mean()
    harmonics = np.arange(1, int(min(3800, rate / 2 - 100) / mean_pitch) + 1)
    gains = _vocal_tract_gain(harmonics * mean_pitch, formants) / harmonics
    voiced = np.sin(np.outer(phase, harmonics)) @ gains
    return envelope * voiced / max(np.abs(voiced).max(), 1e-9)


def speech_like(
    rng: np.random.Generator, seconds: float, rate: int, dbfs: float = -20.0
) -> NDArray[np.float64]:
    """Continuous talk (words of 1-4 syllables, pauses of 50-400 ms)."""
    total = round(seconds * rate)
    parts: list[NDArray[np.float64]] = []
    length = 0
    while length < total:
        for _ in range(rng.integers(1, 5)):
            parts.append(_syllable(rng, rate))
            length += parts[-1].size
        parts.append(np.zeros(round(rng.uniform(0.05, 0.4) * rate)))
        length += parts[-1].size
    talk = np.concatenate(parts)[:total]
    return scale_to_dbfs(talk, dbfs)
