"""
Reading and writing the only WAV files gatekeeper deals in: 16-bit PCM.

Prompts come from people editing a directory and recordings go to disk for
the access log, so every failure names the file and says what is wrong with
it in words a building's technician can act on ("is 8-bit, needs 16-bit"),
rather than surfacing as a ``wave.Error`` in the middle of a call.

Stereo files are folded to mono by averaging the channels; rates from 8 kHz to
48 kHz are accepted (what sound editors and espeak-ng produce).  Python 3.11's
``wave`` module reads only plain PCM headers, not WAVE_FORMAT_EXTENSIBLE ones;
such a file gets an error that says to re-save it as 16-bit PCM.
"""

from __future__ import annotations

import os
import tempfile
import wave
from pathlib import Path

import numpy as np
from attrs import field, frozen
from numpy.typing import ArrayLike, NDArray

from gatekeeper.media.resample import samples_to_pcm

__all__ = [
    "MAX_WAV_RATE",
    "MIN_WAV_RATE",
    "AudioFileError",
    "WavAudio",
    "read_wav",
    "write_wav",
]

MIN_WAV_RATE = 8000
MAX_WAV_RATE = 48000


class AudioFileError(Exception):
    """A WAV file that cannot be used; ``path`` says which one."""

    def __init__(self, path: os.PathLike[str] | str, problem: str) -> None:
        super().__init__(f"{os.fspath(path)}: {problem}")
        self.path = Path(path)
        self.problem = problem


def _read_only(samples: NDArray[np.int16]) -> NDArray[np.int16]:
    samples = np.ascontiguousarray(samples, dtype=np.int16)
    samples.setflags(write=False)
    return samples


@frozen
class WavAudio:
    """Mono 16-bit audio and its rate; the samples are read-only."""

    samples: NDArray[np.int16] = field(converter=_read_only, eq=False)
    sample_rate: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.samples.size / self.sample_rate


def read_wav(path: os.PathLike[str] | str) -> WavAudio:
    """A 16-bit PCM WAV file as mono samples, or :class:`AudioFileError`."""
    try:
        with wave.open(os.fspath(path), "rb") as reader:
            channels = reader.getnchannels()
            width = reader.getsampwidth()
            rate = reader.getframerate()
            data = reader.readframes(reader.getnframes())
    except FileNotFoundError:
        raise AudioFileError(path, "file not found") from None
    except IsADirectoryError:
        raise AudioFileError(path, "is a directory, not a WAV file") from None
    except PermissionError:
        raise AudioFileError(path, "permission denied") from None
    except OSError as e:
        raise AudioFileError(path, f"cannot be read ({e.strerror or e})") from e
    except (wave.Error, EOFError) as e:
        raise AudioFileError(
            path, f"is not a 16-bit PCM WAV file ({e or 'truncated'}); re-save it so"
        ) from e
    if width != 2:
        raise AudioFileError(
            path, f"has {8 * width}-bit samples; gatekeeper needs 16-bit PCM"
        )
    if channels not in (1, 2):
        raise AudioFileError(path, f"has {channels} channels; use mono or stereo")
    if not MIN_WAV_RATE <= rate <= MAX_WAV_RATE:
        raise AudioFileError(
            path,
            f"is sampled at {rate} Hz; use {MIN_WAV_RATE} to {MAX_WAV_RATE} Hz",
        )
    frame_bytes = 2 * channels
    whole = len(data) - len(data) % frame_bytes
    samples = np.frombuffer(data[:whole], dtype="<i2")
    if channels == 2:
        samples = samples.reshape(-1, 2).astype(np.int32).sum(axis=1) // 2
    if samples.size == 0:
        raise AudioFileError(path, "contains no audio")
    return WavAudio(samples.astype(np.int16), rate)


def write_wav(
    path: os.PathLike[str] | str,
    samples: ArrayLike,
    sample_rate: int,
    *,
    mode: int = 0o644,
) -> Path:
    """
    Write mono 16-bit PCM, atomically: a reader never sees half a file.

    The data goes to a temporary file in the same directory, which is then
    given ``mode`` and renamed over ``path``.
    """
    target = Path(path)
    if not MIN_WAV_RATE <= sample_rate <= 192000:
        raise ValueError(f"cannot write a WAV file at {sample_rate} Hz")
    pcm = samples_to_pcm(np.asarray(samples))
    handle, temporary = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
    )
    try:
        with os.fdopen(handle, "wb") as raw, wave.open(raw, "wb") as writer:
            writer.setnchannels(1)
            writer.setsampwidth(2)
            writer.setframerate(sample_rate)
            writer.writeframes(pcm)
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise
    return target
