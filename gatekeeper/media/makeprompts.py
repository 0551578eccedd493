"""
``gatekeeper-prompts``: regenerate a prompt set's WAV files from its text.

A maintenance command, not part of the server: it needs espeak-ng (Debian
package ``espeak-ng``), the server only reads the WAV files this writes.
Each prompt in the text file's ``[prompts]`` section is spoken by espeak-ng,
trimmed of leading and trailing silence, resampled (anti-aliased) to the
output rate, normalised to a steady level and written atomically as
``<name>.wav``, 16-bit mono.

Usage::

    gatekeeper-prompts [TEXT_FILE [OUTPUT_DIR]] [--voice pt-br] [--speed 150]
"""

from __future__ import annotations

import argparse
import configparser
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from attrs import frozen
from numpy.typing import NDArray

from gatekeeper.media.prompts import DEFAULT_PROMPT_DIRECTORY, PROMPT_TEXT_FILE, Prompt
from gatekeeper.media.resample import resample
from gatekeeper.media.wavfile import AudioFileError, read_wav, write_wav

__all__ = ["PromptText", "main", "normalise", "read_prompt_text", "trim_silence"]

DEFAULT_VOICE = "pt-br"
DEFAULT_SPEED = 150
DEFAULT_RATE = 8000
# Peak level of a generated prompt: loud and clear, with room below clipping
# for the resampling filter's overshoot and for phones that add gain.
PEAK_DBFS = -3.0
# Below this a sample counts as silence when trimming the ends.
_SILENCE_DBFS = -45.0
_KEEP_SILENCE = 0.05  # seconds kept before and after the words


@frozen
class PromptText:
    """The contents of a prompt text file."""

    prompts: dict[str, str]
    voice: str
    speed: int


def read_prompt_text(path: Path) -> PromptText:
    """Parse ``prompts.ini``; ``ValueError`` naming what is wrong or missing."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with path.open(encoding="utf-8") as text:
            parser.read_file(text)
    except (OSError, configparser.Error) as e:
        raise ValueError(f"{path}: cannot read the prompt text: {e}") from e
    if not parser.has_section("prompts"):
        raise ValueError(f"{path}: has no [prompts] section")
    prompts = {name: " ".join(text.split()) for name, text in parser["prompts"].items()}
    missing = sorted(p.value for p in Prompt if not prompts.get(p.value))
    if missing:
        raise ValueError(f"{path}: no text for {', '.join(missing)}")
    voice = parser.get("espeak", "voice", fallback=DEFAULT_VOICE)
    speed = parser.getint("espeak", "speed", fallback=DEFAULT_SPEED)
    return PromptText(prompts, voice, speed)


def trim_silence(samples: NDArray[np.int16], sample_rate: int) -> NDArray[np.int16]:
    """The words without the synthesiser's silent ends (50 ms kept each side)."""
    loud = np.flatnonzero(np.abs(samples) > 32768 * 10 ** (_SILENCE_DBFS / 20))
    if loud.size == 0:
        raise ValueError("the synthesiser produced only silence")
    keep = round(_KEEP_SILENCE * sample_rate)
    return samples[max(loud[0] - keep, 0) : loud[-1] + keep + 1]


def normalise(samples: NDArray[np.int16]) -> NDArray[np.int16]:
    """The same audio with its peak at ``PEAK_DBFS``: every prompt equally loud."""
    signal = samples.astype(np.float64)
    peak = np.abs(signal).max()
    if peak == 0:
        raise ValueError("cannot normalise silence")
    return np.rint(signal * (32767 * 10 ** (PEAK_DBFS / 20) / peak)).astype(np.int16)


def _speak(espeak: str, voice: str, speed: int, text: str, wav: Path) -> None:
    subprocess.run(
        [espeak, "-v", voice, "-s", str(speed), "-w", str(wav), "--", text],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gatekeeper-prompts",
        description="Regenerate a prompt set's WAV files with espeak-ng.",
    )
    parser.add_argument(
        "text_file",
        nargs="?",
        type=Path,
        default=DEFAULT_PROMPT_DIRECTORY / PROMPT_TEXT_FILE,
        help="the prompts' text (default: the packaged pt-BR set)",
    )
    parser.add_argument(
        "output_dir",
        nargs="?",
        type=Path,
        help="where to write <name>.wav (default: next to the text file)",
    )
    parser.add_argument("--voice", help="espeak-ng voice (default: from the file)")
    parser.add_argument("--speed", type=int, help="words per minute")
    parser.add_argument(
        "--rate", type=int, default=DEFAULT_RATE, help="output sample rate in Hz"
    )
    parser.add_argument("--espeak", default="espeak-ng", help="espeak-ng program")
    options = parser.parse_args(argv)

    espeak = shutil.which(options.espeak)
    if espeak is None:
        parser.error(
            f"{options.espeak} not found; install it (apt-get install espeak-ng)"
        )
    try:
        text = read_prompt_text(options.text_file)
    except ValueError as e:
        parser.error(str(e))
    output = options.output_dir or options.text_file.parent
    output.mkdir(parents=True, exist_ok=True)
    voice = options.voice or text.voice
    speed = options.speed or text.speed

    with tempfile.TemporaryDirectory(prefix="gatekeeper-prompts-") as scratch:
        spoken = Path(scratch) / "spoken.wav"
        for name, words in text.prompts.items():
            try:
                _speak(espeak, voice, speed, words, spoken)
                raw = read_wav(spoken)
                words_only = trim_silence(raw.samples, raw.sample_rate)
                samples = normalise(resample(words_only, raw.sample_rate, options.rate))
            except (subprocess.CalledProcessError, AudioFileError, ValueError) as e:
                print(f"{name}: {e}", file=sys.stderr)
                return 1
            target = write_wav(output / f"{name}.wav", samples, options.rate)
            print(f"{target}  {samples.size / options.rate:.2f} s  {words}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
