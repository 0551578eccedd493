"""
Recording the visitor's name: an energy voice activity detector and the
recorder that uses it to decide when the name has been said.

The detector works on 20 ms analysis frames.  A frame's level is its energy
(variance, so a DC offset does not count as voice) in dB below full scale,
computed for all the frames of a chunk at once with numpy.  A noise floor
follows the background: it falls to a quieter level quickly and rises
slowly, so a street's steady noise is learnt in a second or two while the
dips between syllables keep it from climbing onto the voice.  A frame is
speech when it stands ``onset_db`` above the floor (and above an absolute
minimum, so line hiss never counts); once speech has begun, a smaller margin
``hold_db`` keeps it going, so soft word endings are not cut.  Speech starts
after ``onset`` seconds of speech frames in a row.  The floor starts at the
first frame's level: people take a few hundred milliseconds to answer a beep,
and if they do talk at once the floor drops to the first pause.

:class:`Recorder` feeds the detector and decides the outcome:

- ``SPEECH``: speech began, then ``trailing_silence`` (default 800 ms) of
  non-speech followed;
- ``NO_SPEECH``: ``no_speech_timeout`` passed without speech beginning;
- ``MAX_LENGTH``: the recording reached ``max_length`` (default 5 s).

The recording kept starts ``pre_roll`` before the detected onset (the
detector needs a few frames to be sure, and the first consonant is quiet) and
ends ``tail`` after the last speech frame.  Everything here is pure; only
:func:`save_recording` touches the disk.
"""

from __future__ import annotations

import enum
import math
import os
from pathlib import Path

import numpy as np
from attrs import define, field, frozen
from numpy.typing import ArrayLike, NDArray

from gatekeeper.media.resample import pcm_to_samples, samples_to_pcm
from gatekeeper.media.wavfile import write_wav
from gatekeeper.session.uuids import is_canonical_uuid

__all__ = [
    "FRAME_SECONDS",
    "Recorder",
    "Recording",
    "RecordingOutcome",
    "VadSettings",
    "VoiceActivityDetector",
    "frame_levels",
    "save_recording",
]

FRAME_SECONDS = 0.02
_FULL_SCALE_POWER = 32768.0**2
_FLOOR_DB = -100.0  # level of digital silence, so log10 never sees zero


@frozen
class VadSettings:
    """Tunable thresholds; times in seconds, levels in dB."""

    trailing_silence: float = 0.8
    no_speech_timeout: float = 5.0
    max_length: float = 5.0
    onset: float = 0.06
    onset_db: float = 9.0
    hold_db: float = 6.0
    min_speech_dbfs: float = -50.0
    floor_rise_time: float = 1.5
    floor_fall_time: float = 0.04
    pre_roll: float = 0.3
    tail: float = 0.2

    def __attrs_post_init__(self) -> None:
        for name in ("trailing_silence", "no_speech_timeout", "max_length", "onset"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.hold_db > self.onset_db:
            raise ValueError("hold_db must not exceed onset_db")


def frame_levels(samples: ArrayLike, frame_size: int) -> NDArray[np.float64]:
    """The level (dBFS of the variance) of each whole frame in ``samples``."""
    signal = np.asarray(samples)
    frames = signal[: signal.size - signal.size % frame_size].reshape(-1, frame_size)
    power = frames.astype(np.float64).var(axis=1) / _FULL_SCALE_POWER
    return 10.0 * np.log10(np.maximum(power, 10.0 ** (_FLOOR_DB / 10.0)))


def _smoothing(time_constant: float) -> float:
    """Per-frame weight of a first-order smoother with this time constant."""
    return 1.0 - math.exp(-FRAME_SECONDS / time_constant)


@define
class VoiceActivityDetector:
    """Frame-by-frame speech decisions over an adaptive noise floor."""

    settings: VadSettings = field(factory=VadSettings)
    noise_floor: float | None = None
    in_speech: bool = False
    _run: int = 0  # consecutive speech frames while not yet in speech
    _rise: float = field(init=False)
    _fall: float = field(init=False)
    _onset_frames: int = field(init=False)

    def __attrs_post_init__(self) -> None:
        self._rise = _smoothing(self.settings.floor_rise_time)
        self._fall = _smoothing(self.settings.floor_fall_time)
        self._onset_frames = max(1, round(self.settings.onset / FRAME_SECONDS))

    def is_speech(self, level: float) -> bool:
        """Whether a frame at ``level`` dBFS is voice, updating the floor."""
        settings = self.settings
        floor = level if self.noise_floor is None else self.noise_floor
        margin = settings.hold_db if self.in_speech else settings.onset_db
        speech = level >= settings.min_speech_dbfs and level >= floor + margin
        weight = self._fall if level < floor else self._rise
        self.noise_floor = floor + weight * (level - floor)
        return speech

    def update(self, level: float) -> bool:
        """Feed one frame; True while speech is under way (after the onset)."""
        speech = self.is_speech(level)
        if self.in_speech:
            self.in_speech = speech
            return speech
        self._run = self._run + 1 if speech else 0
        if self._run >= self._onset_frames:
            self.in_speech = True
            self._run = 0
        return self.in_speech

    @property
    def onset_frames(self) -> int:
        """Speech frames in a row before speech counts as begun."""
        return self._onset_frames


class RecordingOutcome(enum.Enum):
    SPEECH = "speech"
    NO_SPEECH = "no_speech"
    MAX_LENGTH = "max_length"


def _read_only(samples: NDArray[np.int16]) -> NDArray[np.int16]:
    samples = np.ascontiguousarray(samples, dtype=np.int16)
    samples.setflags(write=False)
    return samples


@frozen
class Recording:
    """What a recorder captured: the outcome and the speech (empty if none)."""

    outcome: RecordingOutcome
    samples: NDArray[np.int16] = field(converter=_read_only, eq=False)
    sample_rate: int

    @property
    def duration(self) -> float:
        return self.samples.size / self.sample_rate

    @property
    def pcm(self) -> bytes:
        """The samples as 16-bit little-endian PCM."""
        return samples_to_pcm(self.samples)


class Recorder:
    """
    Fed the visitor's audio as it arrives; says when the name is recorded.

    ``feed`` takes PCM of any length (Asterisk's frames are usually 20 ms but
    need not be) and returns the :class:`Recording` once it is done, ``None``
    before.  ``stop`` ends early (the visitor hung up, the flow gave up) and
    returns what there is.
    """

    def __init__(self, sample_rate: int, settings: VadSettings | None = None) -> None:
        self.sample_rate = sample_rate
        self.settings = settings or VadSettings()
        self.detector = VoiceActivityDetector(self.settings)
        self._frame = round(sample_rate * FRAME_SECONDS)
        self._audio: list[NDArray[np.int16]] = []  # whole frames heard so far
        self._partial = np.zeros(0, dtype=np.int16)
        self._frames_heard = 0
        self._start: int | None = None  # first frame kept, once speech began
        self._last_speech = 0  # index of the latest speech frame
        self._result: Recording | None = None

    def _frames(self, seconds: float) -> int:
        return max(1, round(seconds / FRAME_SECONDS))

    @property
    def done(self) -> bool:
        return self._result is not None

    @property
    def result(self) -> Recording | None:
        return self._result

    def feed(self, pcm: bytes) -> Recording | None:
        """Take more audio; the recording once it is complete."""
        if self._result is not None:
            return self._result
        samples = pcm_to_samples(pcm)
        if self._partial.size:
            samples = np.concatenate((self._partial, samples))
        whole = samples.size - samples.size % self._frame
        self._partial = samples[whole:].copy()
        if not whole:
            return None
        chunk = samples[:whole]
        self._audio.append(chunk)
        for level in frame_levels(chunk, self._frame):
            self._step(float(level))
            if self._result is not None:
                break
        return self._result

    def stop(self) -> Recording:
        """End now: the speech so far, or ``NO_SPEECH`` if none began."""
        if self._result is None:
            if self._start is None:
                self._finish(RecordingOutcome.NO_SPEECH)
            else:
                self._finish(RecordingOutcome.SPEECH, self._frames_heard)
        assert self._result is not None
        return self._result

    def _step(self, level: float) -> None:
        index = self._frames_heard
        self._frames_heard += 1
        settings = self.settings
        if self.detector.update(level):
            self._last_speech = index
            if self._start is None:
                onset = index - self.detector.onset_frames + 1
                self._start = max(0, onset - self._frames(settings.pre_roll))
        if self._start is None:
            if self._frames_heard >= self._frames(settings.no_speech_timeout):
                self._finish(RecordingOutcome.NO_SPEECH)
            return
        if self._frames_heard - self._start >= self._frames(settings.max_length):
            self._finish(RecordingOutcome.MAX_LENGTH, self._frames_heard)
        elif index - self._last_speech >= self._frames(settings.trailing_silence):
            end = self._last_speech + 1 + self._frames(settings.tail)
            self._finish(RecordingOutcome.SPEECH, end)

    def _finish(self, outcome: RecordingOutcome, end: int = 0) -> None:
        if self._start is None:
            samples = np.zeros(0, dtype=np.int16)
        else:
            heard = np.concatenate(self._audio)
            samples = heard[self._start * self._frame : end * self._frame]
        self._audio = []
        self._result = Recording(outcome, samples, self.sample_rate)


def save_recording(
    recording: Recording, directory: os.PathLike[str] | str, call_uuid: str
) -> Path:
    """Write ``<call_uuid>.wav`` in ``directory``; refuses a non-canonical UUID."""
    if not is_canonical_uuid(call_uuid):
        raise ValueError(f"{call_uuid!r} is not a canonical call UUID")
    return write_wav(
        Path(directory) / f"{call_uuid}.wav",
        recording.samples,
        recording.sample_rate,
        mode=0o640,
    )
