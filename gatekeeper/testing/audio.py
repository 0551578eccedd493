"""
What the simulated callers say and how they tell what they hear.

A leg of the simulated Asterisk has no ears, so it recognises sounds by their
exact samples: gatekeeper sends prompt PCM unchanged at the leg's rate, so a
short run of a prompt's samples (a *probe*) found in the received stream
means that prompt started there.  :class:`SoundSpotter` does that online, a
frame at a time, for any set of sounds: the real pt-BR prompts (the demo),
synthetic ones (tests and the benchmark, see :func:`write_synthetic_prompts`,
where each prompt is one constant sample value), the beep and ringback tones.

Each simulated visitor speaks with a *signature* (:func:`signature_voice`): a
tone of its own frequency whose every 20 ms frame carries a tag, three marker
samples then the visitor's number and the frame's sequence number.  The
visitor's recorded name is played to the resident unchanged, so the tags
found in what a resident heard (:func:`find_signatures`) say whose name it
was: the check that no visit ever crosses into another's call pair.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from attrs import frozen

from gatekeeper.media.prompts import Prompt, PromptLibrary
from gatekeeper.media.resample import samples_to_pcm
from gatekeeper.media.tones import beep, ringback
from gatekeeper.media.wavfile import write_wav

__all__ = [
    "BEEP",
    "RINGBACK",
    "SYNTHETIC_VALUES",
    "ConstantSpotter",
    "Heard",
    "SoundSpotter",
    "find_signatures",
    "prompt_sounds",
    "signature_voice",
    "write_synthetic_prompts",
]

BEEP = "(beep)"
RINGBACK = "(ringback)"

#: The constant sample value of each synthetic prompt: distinct, far from
#: zero, and never one of the signature markers.
SYNTHETIC_VALUES: Mapping[str, int] = {
    str(p): 1000 + 100 * i for i, p in enumerate(Prompt)
}

_MARK = (23130, -15420, 11633)
_MARK_BYTES = struct.pack("<3h", *_MARK)
_TAG = struct.Struct("<3hHH")
_PROBE_SAMPLES = 24
_NAME_GAP = 4000  # bytes (a quarter second at 8 kHz) between two hearings of a name


def write_synthetic_prompts(
    directory: Path,
    seconds: float | Mapping[str, float] = 0.2,
    sample_rate: int = 8000,
) -> Path:
    """A prompt folder where each prompt is ``seconds`` of one constant value.

    ``seconds`` may map prompt names to durations (the benchmark gives each
    the length of its real pt-BR counterpart, so visits take as long).
    """
    directory.mkdir(parents=True, exist_ok=True)
    for name, value in SYNTHETIC_VALUES.items():
        length = seconds if isinstance(seconds, float | int) else seconds[name]
        samples = np.full(max(1, round(sample_rate * length)), value, np.int16)
        write_wav(directory / f"{name}.wav", samples, sample_rate)
    return directory


def prompt_sounds(library: PromptLibrary, sample_rate: int = 8000) -> dict[str, bytes]:
    """Every sound a leg may hear from gatekeeper, by name, as PCM."""
    sounds = {name: library.pcm(name, sample_rate) for name in sorted(library.names)}
    sounds[BEEP] = beep(sample_rate)
    # Only the tone: the cadence's four silent seconds would match anything.
    sounds[RINGBACK] = ringback(sample_rate)[: sample_rate * 2]
    return sounds


def signature_voice(visitor: int, seconds: float, sample_rate: int = 8000) -> bytes:
    """``seconds`` of visitor number ``visitor``'s own voice, tagged per frame.

    A tone between 300 and 1,100 Hz picked by the number, loud enough for any
    voice detector, with the tag written over the first samples of each
    20 ms frame.
    """
    if not 0 <= visitor < 65536:
        raise ValueError(f"visitor number {visitor} does not fit a tag")
    per_frame = sample_rate // 50
    frames = max(1, round(seconds * 50))
    frequency = 300.0 + (visitor * 37) % 800
    t = np.arange(frames * per_frame) / sample_rate
    samples = (9000 * np.sin(2 * math.pi * frequency * t)).astype(np.int16)
    pcm = bytearray(samples_to_pcm(samples))
    for k in range(frames):
        _TAG.pack_into(pcm, k * per_frame * 2, *_MARK, visitor, k & 0xFFFF)
    return bytes(pcm)


def find_signatures(pcm: bytes | bytearray) -> dict[int, int]:
    """Visitor number -> how many of its tagged frames are in ``pcm``."""
    found: dict[int, int] = {}
    view = memoryview(pcm)
    start = pcm.find(_MARK_BYTES)
    while start >= 0:
        if start % 2 == 0 and start + _TAG.size <= len(pcm):
            visitor = _TAG.unpack_from(view, start)[3]
            found[visitor] = found.get(visitor, 0) + 1
        start = pcm.find(_MARK_BYTES, start + 1)
    return found


@frozen
class Heard:
    """One sound a leg heard: its name and when its first frame arrived."""

    name: str
    at: float
    offset: int
    """Byte offset of its first sample in the leg's received audio."""


@frozen
class _Probe:
    name: str
    data: bytes
    offset: int  # where the probe sits in the sound
    length: int  # the sound's length in bytes


class SoundSpotter:
    """
    Finds known sounds in a stream of received audio, online.

    Each sound is known by one probe: ``_PROBE_SAMPLES`` samples from where it
    first leaves silence.  A sound counts once per occurrence: a probe found
    again inside the span of the last occurrence of the same sound (a
    constant synthetic prompt matches everywhere along itself) is the same
    occurrence.  Visitor signatures are reported as ``name:<number>``.
    """

    def __init__(self, sounds: Mapping[str, bytes], signatures: bool = True) -> None:
        self._probes: list[_Probe] = []
        for name, pcm in sounds.items():
            samples = np.frombuffer(pcm, dtype="<i2")
            loud = np.flatnonzero(samples)
            if not loud.size:
                continue
            first = int(loud[0])
            first = max(0, min(first, samples.size - _PROBE_SAMPLES))
            data = pcm[first * 2 : (first + _PROBE_SAMPLES) * 2]
            self._probes.append(_Probe(name, data, first * 2, len(pcm)))
        self._signatures = signatures
        self._overlap = max(_PROBE_SAMPLES * 2, _TAG.size) - 1
        self._tail = b""
        self._total = 0  # bytes fed so far
        self._last: dict[str, int] = {}  # sound -> start offset of its last occurrence
        self._last_name: int | None = None
        self._last_tag_at = -(1 << 30)
        self.heard: list[Heard] = []
        self.signatures: dict[int, int] = {}

    def feed(self, pcm: bytes, at: float) -> list[Heard]:
        """Look at the next received audio (arrived at ``at``); new sounds."""
        window = self._tail + pcm
        base = self._total - len(self._tail)
        new: list[Heard] = []
        for probe in self._probes:
            found = window.find(probe.data)
            while found >= 0 and (base + found) % 2:
                found = window.find(probe.data, found + 1)
            if found < 0:
                continue
            start = base + found - probe.offset
            last = self._last.get(probe.name)
            if last is not None and start < last + probe.length:
                continue
            self._last[probe.name] = start
            new.append(Heard(probe.name, at, start))
        if self._signatures:
            for visitor, count in find_signatures(window[len(self._tail) :]).items():
                self.signatures[visitor] = self.signatures.get(visitor, 0) + count
                # A new occurrence: another voice, or the same after a pause.
                if (
                    self._last_name != visitor
                    or self._total - self._last_tag_at > _NAME_GAP
                ):
                    new.append(Heard(f"name:{visitor}", at, self._total))
                self._last_name = visitor
                self._last_tag_at = self._total
        new.sort(key=lambda h: h.offset)
        self.heard.extend(new)
        self._total += len(pcm)
        self._tail = window[-self._overlap :]
        return new

    def names(self, ignore: Iterable[str] = ()) -> list[str]:
        """The names heard, in order, without those in ``ignore``."""
        skip = set(ignore)
        return [h.name for h in self.heard if h.name not in skip]


class ConstantSpotter:
    """
    A cheap :class:`SoundSpotter` for synthetic prompts only.

    Each synthetic prompt is one constant sample value, so a frame's first
    and last samples say which prompt it starts or carries: two lookups per
    frame, cheap enough for a load generator with a thousand legs.
    """

    def __init__(
        self, values: Mapping[str, int] = SYNTHETIC_VALUES, signatures: bool = True
    ) -> None:
        self._names = {value: name for name, value in values.items()}
        self._signatures = signatures
        self._current: str | None = None
        self._total = 0
        self._last_name: int | None = None
        self._last_tag_at = -(1 << 30)
        self.heard: list[Heard] = []
        self.signatures: dict[int, int] = {}

    def feed(self, pcm: bytes, at: float) -> list[Heard]:
        new: list[Heard] = []
        names = self._names
        first = names.get(int.from_bytes(pcm[0:2], "little", signed=True))
        last = names.get(int.from_bytes(pcm[-2:], "little", signed=True))
        for name in (first, last):
            if name is not None and name != self._current:
                new.append(Heard(name, at, self._total))
            self._current = name if name is not None else self._current
        if last is None:
            self._current = None
        if self._signatures and _MARK_BYTES in pcm:
            for visitor, count in find_signatures(pcm).items():
                self.signatures[visitor] = self.signatures.get(visitor, 0) + count
                if (
                    self._last_name != visitor
                    or self._total - self._last_tag_at > _NAME_GAP
                ):
                    new.append(Heard(f"name:{visitor}", at, self._total))
                self._last_name = visitor
                self._last_tag_at = self._total
        self._total += len(pcm)
        self.heard.extend(new)
        return new

    def names(self, ignore: Iterable[str] = ()) -> list[str]:
        skip = set(ignore)
        return [h.name for h in self.heard if h.name not in skip]
