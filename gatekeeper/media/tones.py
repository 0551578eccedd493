"""
The call-progress tones gatekeeper plays, as PCM at any leg's rate.

- Ringback while the visitor waits for the resident: the Brazilian one
  (Anatel's "tom de controle de chamada"), 425 Hz, 1 s on, 4 s off.
- A beep before the visitor's name is recorded: 1 kHz for a quarter second.
- An error tone: three rising tones, the ITU special information tone
  (950, 1400, 1800 Hz), which callers know means "that did not work".

Each tone burst fades in and out over 5 ms: a sine switched on abruptly is
heard as a click.  Tones are synthesised directly at the requested rate, so
no resampling is involved, and are cached per rate (they are the same for
every call).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numpy.typing import NDArray

from gatekeeper.media.resample import samples_to_pcm

__all__ = [
    "BEEP_FREQUENCY",
    "RINGBACK_FREQUENCY",
    "RINGBACK_OFF",
    "RINGBACK_ON",
    "TONE_LEVEL_DBFS",
    "beep",
    "error_tone",
    "ringback",
    "silence",
    "tone",
]

RINGBACK_FREQUENCY = 425.0
RINGBACK_ON = 1.0
RINGBACK_OFF = 4.0
BEEP_FREQUENCY = 1000.0
BEEP_DURATION = 0.25
ERROR_FREQUENCIES = (950.0, 1400.0, 1800.0)
ERROR_STEP = 0.33
# Peak level: the -10 dBm0 of network tones sits about 13 dB below full scale.
TONE_LEVEL_DBFS = -13.0
_RAMP = 0.005


def tone(
    frequency: float,
    duration: float,
    sample_rate: int,
    level_dbfs: float = TONE_LEVEL_DBFS,
) -> NDArray[np.int16]:
    """A sine burst with 5 ms fades at both ends."""
    if not 0 < frequency < sample_rate / 2:
        raise ValueError(f"{frequency} Hz cannot be played at {sample_rate} Hz")
    count = round(duration * sample_rate)
    times = np.arange(count) / sample_rate
    burst = 32767 * 10 ** (level_dbfs / 20) * np.sin(2 * math.pi * frequency * times)
    ramp = min(round(_RAMP * sample_rate), count // 2)
    if ramp:
        fade = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
        burst[:ramp] *= fade
        burst[count - ramp :] *= fade[::-1]
    return np.rint(burst).astype(np.int16)


def silence(duration: float, sample_rate: int) -> NDArray[np.int16]:
    return np.zeros(round(duration * sample_rate), dtype=np.int16)


@functools.lru_cache(maxsize=32)
def ringback(sample_rate: int) -> bytes:
    """One 5 s cadence (1 s of 425 Hz, 4 s of silence), to loop while waiting."""
    return samples_to_pcm(
        np.concatenate(
            (
                tone(RINGBACK_FREQUENCY, RINGBACK_ON, sample_rate),
                silence(RINGBACK_OFF, sample_rate),
            )
        )
    )


@functools.lru_cache(maxsize=32)
def beep(sample_rate: int) -> bytes:
    """The cue that recording starts now."""
    return samples_to_pcm(tone(BEEP_FREQUENCY, BEEP_DURATION, sample_rate))


@functools.lru_cache(maxsize=32)
def error_tone(sample_rate: int) -> bytes:
    """Three rising tones, then a short pause before whatever is said next."""
    steps = [tone(f, ERROR_STEP, sample_rate) for f in ERROR_FREQUENCIES]
    return samples_to_pcm(np.concatenate([*steps, silence(0.2, sample_rate)]))
