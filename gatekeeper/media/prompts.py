"""
The voice prompts, loaded once at start and served at any leg's rate.

A prompt that cannot be played must stop the server from starting, not make
a visitor hear silence in the middle of a call: :meth:`PromptLibrary.load`
reads every WAV in the prompt directory up front and raises one
:class:`PromptError` listing every missing or unusable file.

A prompt set is a directory of ``<name>.wav`` files, one per :class:`Prompt`
(extra names are loaded too, for buildings that add their own), plus the
``prompts.ini`` text they were generated from (see
:mod:`gatekeeper.media.makeprompts`).  Legs ask for a prompt at their own
rate; the first request at a rate resamples it and later ones reuse the same
``bytes``, so a thousand calls playing the greeting share one copy.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from gatekeeper.media.resample import pcm_to_samples, resample, samples_to_pcm
from gatekeeper.media.wavfile import AudioFileError, WavAudio, read_wav

__all__ = [
    "DEFAULT_PROMPT_DIRECTORY",
    "PROMPT_TEXT_FILE",
    "Prompt",
    "PromptError",
    "PromptLibrary",
]

DEFAULT_PROMPT_DIRECTORY = Path(__file__).resolve().parent.parent / "prompts" / "pt_BR"
PROMPT_TEXT_FILE = "prompts.ini"


class Prompt(enum.StrEnum):
    """Every prompt the visit script needs; the value is the file's stem."""

    # Heard by the visitor.
    GREETING = "greeting"
    ASK_APARTMENT = "ask_apartment"
    INVALID_APARTMENT = "invalid_apartment"
    SAY_NAME = "say_name"
    CALLING_RESIDENT = "calling_resident"
    RESIDENT_NOT_ANSWERING = "resident_not_answering"
    ACCESS_GRANTED = "access_granted"
    ACCESS_DENIED = "access_denied"
    RESIDENTS_UNREACHABLE = "residents_unreachable"
    DOOR_FAILED = "door_failed"
    GOODBYE = "goodbye"
    # Heard by the resident: intro, the visitor's recorded name, the choice.
    RESIDENT_INTRO = "resident_intro"
    RESIDENT_CHOICE = "resident_choice"
    VISITOR_LEFT = "visitor_left"


class PromptError(Exception):
    """The prompt set cannot be used; ``problems`` lists each file's fault."""

    def __init__(self, directory: os.PathLike[str] | str, problems: list[str]) -> None:
        listing = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"prompt set {os.fspath(directory)} is unusable:\n{listing}")
        self.directory = Path(directory)
        self.problems = problems


class PromptLibrary:
    """Prompts by name, as PCM at any rate, resampled once per (prompt, rate)."""

    def __init__(self, sounds: Mapping[str, WavAudio]) -> None:
        self._sounds = dict(sounds)
        self._cache: dict[tuple[str, int], bytes] = {}

    @classmethod
    def load(
        cls,
        directory: os.PathLike[str] | str = DEFAULT_PROMPT_DIRECTORY,
        required: Iterable[str] = tuple(Prompt),
    ) -> PromptLibrary:
        """Every ``*.wav`` in ``directory``; :class:`PromptError` if any fails."""
        folder = Path(directory)
        if not folder.is_dir():
            raise PromptError(folder, ["the directory does not exist"])
        wanted = {str(name) for name in required}
        try:
            present = {path.stem for path in folder.glob("*.wav") if path.is_file()}
        except OSError as e:
            raise PromptError(folder, [f"cannot list the directory: {e}"]) from e
        sounds: dict[str, WavAudio] = {}
        problems: list[str] = []
        for name in sorted(wanted | present):
            try:
                sounds[name] = read_wav(folder / f"{name}.wav")
            except AudioFileError as e:
                problems.append(f"{e.path.name}: {e.problem}")
        if problems:
            raise PromptError(folder, problems)
        return cls(sounds)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._sounds)

    def __contains__(self, name: object) -> bool:
        return name in self._sounds

    def duration(self, name: str) -> float:
        """Seconds of audio, the same at every rate."""
        return self._sound(name).duration

    def pcm(self, name: str, sample_rate: int) -> bytes:
        """16-bit little-endian PCM of the prompt at ``sample_rate``."""
        key = (str(name), sample_rate)
        cached = self._cache.get(key)
        if cached is None:
            sound = self._sound(name)
            cached = self._cache[key] = samples_to_pcm(
                resample(sound.samples, sound.sample_rate, sample_rate)
            )
        return cached

    def samples(self, name: str, sample_rate: int) -> NDArray[np.int16]:
        """The prompt at ``sample_rate`` as a read-only int16 array."""
        return pcm_to_samples(self.pcm(name, sample_rate))

    def warm(self, sample_rates: Iterable[int]) -> None:
        """Resample every prompt now, so no call pays for it later."""
        for rate in sample_rates:
            for name in self._sounds:
                self.pcm(name, rate)

    def _sound(self, name: str) -> WavAudio:
        try:
            return self._sounds[str(name)]
        except KeyError:
            raise KeyError(f"no prompt named {str(name)!r}") from None
