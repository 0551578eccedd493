"""Tests for the prompt library, the packaged pt-BR set and gatekeeper-prompts."""

from __future__ import annotations

import io
import shutil
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
from twisted.trial.unittest import SynchronousTestCase

from gatekeeper.media import makeprompts
from gatekeeper.media.makeprompts import (
    main,
    normalise,
    read_prompt_text,
    trim_silence,
)
from gatekeeper.media.prompts import (
    DEFAULT_PROMPT_DIRECTORY,
    PROMPT_TEXT_FILE,
    Prompt,
    PromptError,
    PromptLibrary,
)
from gatekeeper.media.resample import pcm_to_samples
from gatekeeper.media.wavfile import read_wav, write_wav
from tests.media.test_resample import assert_close


def make_prompt_set(directory: Path, names=tuple(Prompt), rate: int = 8000) -> Path:
    """A complete prompt set of short distinct tones."""
    directory.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        times = np.arange(rate // 10) / rate
        write_wav(
            directory / f"{name}.wav",
            8000 * np.sin(2 * np.pi * (300 + 50 * i) * times),
            rate,
        )
    return directory


class PromptLibraryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = make_prompt_set(Path(self.mktemp()))

    def test_loads_all_and_extras(self) -> None:
        """Every required prompt and any extra WAV in the directory is loaded."""
        write_wav(self.directory / "holiday.wav", np.ones(80), 8000)
        library = PromptLibrary.load(self.directory)
        self.assertEqual(library.names, {p.value for p in Prompt} | {"holiday"})
        self.assertIn(Prompt.GREETING, library)
        self.assertEqual(library.duration(Prompt.GREETING), 0.1)

    def test_missing_prompts_listed_together(self) -> None:
        """Every missing prompt is named in one error raised at load time."""
        (self.directory / "greeting.wav").unlink()
        (self.directory / "goodbye.wav").unlink()
        error = self.assertRaises(PromptError, PromptLibrary.load, self.directory)
        self.assertEqual(
            error.problems,
            ["goodbye.wav: file not found", "greeting.wav: file not found"],
        )
        self.assertIn(str(self.directory), str(error))
        self.assertIn("greeting.wav: file not found", str(error))

    def test_unusable_prompt_is_named(self) -> None:
        """A corrupt or 8-bit prompt is reported with its file name and fault."""
        (self.directory / "say_name.wav").write_bytes(b"RIFF junk")
        error = self.assertRaises(PromptError, PromptLibrary.load, self.directory)
        self.assertEqual(len(error.problems), 1)
        self.assertTrue(
            error.problems[0].startswith("say_name.wav: is not a 16-bit PCM WAV")
        )

    def test_missing_directory(self) -> None:
        """A prompt directory that does not exist is a PromptError, not a crash."""
        error = self.assertRaises(PromptError, PromptLibrary.load, self.directory / "x")
        self.assertEqual(error.problems, ["the directory does not exist"])

    def test_custom_required_names(self) -> None:
        """A caller may require its own names; absent ones are reported."""
        error = self.assertRaises(
            PromptError,
            PromptLibrary.load,
            self.directory,
            required=["greeting", "night"],
        )
        self.assertEqual(error.problems, ["night.wav: file not found"])

    def test_rates_and_cache(self) -> None:
        """PCM is produced at the asked rate, once per (prompt, rate), then shared."""
        library = PromptLibrary.load(self.directory)
        at8 = library.pcm(Prompt.GREETING, 8000)
        at16 = library.pcm(Prompt.GREETING, 16000)
        self.assertEqual(len(at8), 1600)
        self.assertEqual(len(at16), 3200)
        self.assertIs(library.pcm("greeting", 16000), at16)
        self.assertIs(library.pcm(Prompt.GREETING, 8000), at8)
        samples = library.samples(Prompt.GREETING, 16000)
        self.assertEqual(samples.size, 1600)
        self.assertFalse(samples.flags.writeable)

    def test_resampled_prompt_keeps_its_pitch(self) -> None:
        """A prompt asked for at 48 kHz carries the same tone as at 8 kHz."""
        library = PromptLibrary.load(self.directory)
        audio = library.samples(Prompt.GREETING, 48000).astype(float)
        spectrum = np.abs(np.fft.rfft(audio))
        peak = np.fft.rfftfreq(audio.size, 1 / 48000)[spectrum.argmax()]
        self.assertEqual(peak, 300.0)

    def test_warm_fills_the_cache(self) -> None:
        """warm() resamples every prompt at the given rates up front."""
        library = PromptLibrary.load(self.directory)
        library.warm([16000, 44100])
        self.assertEqual(len(library._cache), 2 * len(Prompt))

    def test_unknown_prompt(self) -> None:
        """Asking for a prompt that does not exist names it."""
        library = PromptLibrary.load(self.directory)
        error = self.assertRaises(KeyError, library.pcm, "nope", 8000)
        self.assertIn("nope", str(error))


class PackagedPromptSetTests(SynchronousTestCase):
    def test_default_set_loads(self) -> None:
        """The committed pt-BR set has every prompt, 8 kHz, 16-bit, with speech in it."""
        library = PromptLibrary.load()
        for prompt in Prompt:
            self.assertGreater(library.duration(prompt), 0.5, prompt)
            samples = pcm_to_samples(library.pcm(prompt, 8000))
            self.assertGreater(np.abs(samples).max(), 16000, prompt)

    def test_default_set_is_small(self) -> None:
        """The committed WAV files stay under 1 MB in all."""
        total = sum(p.stat().st_size for p in DEFAULT_PROMPT_DIRECTORY.glob("*.wav"))
        self.assertLess(total, 1_000_000)

    def test_text_file_covers_every_prompt(self) -> None:
        """prompts.ini has a text for every prompt, and a voice."""
        text = read_prompt_text(DEFAULT_PROMPT_DIRECTORY / PROMPT_TEXT_FILE)
        self.assertEqual(set(text.prompts), {p.value for p in Prompt})
        self.assertEqual(text.voice, "pt-br")
        self.assertIn("Visitante no portão", text.prompts["resident_intro"])


FAKE_ESPEAK = """\
#!{python}
import sys, wave, math
args = sys.argv[1:]
out = args[args.index("-w") + 1]
with open({log!r}, "a") as log:
    log.write(" ".join(args[:4]) + "\\n")
with wave.open(out, "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(22050)
    silence = bytes(2 * 2205)
    tone = b"".join(
        int(3000 * math.sin(2 * math.pi * 440 * i / 22050)).to_bytes(2, "little", signed=True)
        for i in range(11025)
    )
    w.writeframes(silence + tone + silence)
"""


class MakePromptsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.directory.mkdir()
        self.espeak = self.directory / "fake-espeak"
        self.calls = self.directory / "calls.log"
        self.espeak.write_text(
            FAKE_ESPEAK.format(python=sys.executable, log=str(self.calls))
        )
        self.espeak.chmod(0o755)

    def run_main(self, *args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as e:
                code = e.code
        return code, out.getvalue(), err.getvalue()

    def test_generates_a_loadable_set(self) -> None:
        """From the text file, every prompt is written as trimmed 8 kHz WAV."""
        text = self.directory / "prompts.ini"
        shutil.copy(DEFAULT_PROMPT_DIRECTORY / PROMPT_TEXT_FILE, text)
        out = self.directory / "out"
        code, stdout, _ = self.run_main(
            str(text), str(out), "--espeak", str(self.espeak), "--voice", "en"
        )
        self.assertEqual(code, 0)
        library = PromptLibrary.load(out)
        # 0.5 s of tone plus the 50 ms margins kept at each end.
        assert_close(self, library.duration(Prompt.GREETING), 0.6, 2 / 8000)
        self.assertEqual(read_wav(out / "greeting.wav").sample_rate, 8000)
        self.assertIn("greeting.wav", stdout)
        calls = self.calls.read_text().splitlines()
        self.assertEqual(calls, ["-v en -s 150"] * len(Prompt))
        self.assertEqual(
            sorted(p.name for p in out.iterdir()), sorted(f"{p}.wav" for p in Prompt)
        )
        peak = np.abs(library.samples(Prompt.GREETING, 8000)).max()
        self.assertEqual(peak, round(32767 * 10 ** (makeprompts.PEAK_DBFS / 20)))

    def test_missing_text_is_refused(self) -> None:
        """A text file lacking prompts names them and writes nothing."""
        text = self.directory / "prompts.ini"
        text.write_text("[prompts]\ngreeting = Olá\n")
        code, _, stderr = self.run_main(str(text), "--espeak", str(self.espeak))
        self.assertEqual(code, 2)
        self.assertIn("no text for access_denied", stderr)
        self.assertEqual(
            sorted(p.name for p in self.directory.iterdir()),
            ["fake-espeak", "prompts.ini"],
        )

    def test_espeak_missing(self) -> None:
        """Without espeak-ng the command says how to install it."""
        code, _, stderr = self.run_main(
            "--espeak", str(self.directory / "no-such-program")
        )
        self.assertEqual(code, 2)
        self.assertIn("apt-get install espeak-ng", stderr)

    def test_trim_and_normalise(self) -> None:
        """Silent ends are cut to 50 ms; the peak is set to the prompt level."""
        samples = np.concatenate([np.zeros(8000), np.full(800, 1000), np.zeros(8000)])
        trimmed = trim_silence(samples.astype(np.int16), 8000)
        self.assertEqual(trimmed.size, 800 + 2 * 400)
        peak = round(32767 * 10 ** (makeprompts.PEAK_DBFS / 20))
        self.assertEqual(np.abs(normalise(trimmed)).max(), peak)
        silent = np.zeros(100, dtype=np.int16)
        self.assertRaises(ValueError, trim_silence, silent, 8000)
        self.assertRaises(ValueError, normalise, silent)
