"""Tests for gatekeeper.media.wavfile: reading, writing and clear errors."""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np
from twisted.trial.unittest import SynchronousTestCase

from gatekeeper.media.wavfile import AudioFileError, read_wav, write_wav


def write_raw(
    path: Path, frames: bytes, *, channels: int = 1, width: int = 2, rate: int = 8000
) -> Path:
    """A WAV file with any header values, as a sound editor might write it."""
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        writer.writeframes(frames)
    return path


class ReadWavTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.directory.mkdir()

    def assertProblem(self, path: Path, words: str) -> AudioFileError:
        error = self.assertRaises(AudioFileError, read_wav, path)
        self.assertIn(str(path), str(error))
        self.assertIn(words, error.problem)
        self.assertEqual(error.path, path)
        return error

    def test_mono(self) -> None:
        """A mono 16-bit file reads back as its samples and rate."""
        samples = np.array([0, 1, -1, 32767, -32768], dtype=np.int16)
        path = write_raw(self.directory / "a.wav", samples.tobytes(), rate=16000)
        audio = read_wav(path)
        self.assertEqual(audio.samples.tolist(), samples.tolist())
        self.assertEqual(audio.sample_rate, 16000)
        self.assertEqual(audio.duration, 5 / 16000)
        self.assertFalse(audio.samples.flags.writeable)

    def test_stereo_folds_to_mono(self) -> None:
        """Stereo channels are averaged into one, without int16 overflow."""
        frames = np.array([[100, 300], [32767, 32767], [-32768, -32768]], dtype="<i2")
        path = write_raw(self.directory / "s.wav", frames.tobytes(), channels=2)
        self.assertEqual(read_wav(path).samples.tolist(), [200, 32767, -32768])

    def test_missing(self) -> None:
        """A missing file names itself and says it is not there."""
        self.assertProblem(self.directory / "nope.wav", "not found")

    def test_directory(self) -> None:
        """A directory where a WAV should be is reported as such."""
        self.assertProblem(self.directory, "directory")

    def test_not_a_wav(self) -> None:
        """Text or a truncated header says the file is not a 16-bit PCM WAV."""
        text = self.directory / "t.wav"
        text.write_text("hello, this is not audio")
        self.assertProblem(text, "not a 16-bit PCM WAV")
        empty = self.directory / "e.wav"
        empty.write_bytes(b"")
        self.assertProblem(empty, "not a 16-bit PCM WAV")

    def test_wrong_sample_width(self) -> None:
        """An 8-bit file says it is 8-bit and that 16-bit is needed."""
        path = write_raw(self.directory / "8.wav", bytes(100), width=1)
        self.assertProblem(path, "8-bit samples; gatekeeper needs 16-bit")
        path = write_raw(self.directory / "24.wav", bytes(99), width=3)
        self.assertProblem(path, "24-bit")

    def test_wrong_rate_and_channels(self) -> None:
        """Rates outside 8-48 kHz and more than two channels are refused."""
        self.assertProblem(
            write_raw(self.directory / "r.wav", bytes(100), rate=96000), "96000 Hz"
        )
        self.assertProblem(
            write_raw(self.directory / "l.wav", bytes(100), rate=4000), "4000 Hz"
        )
        self.assertProblem(
            write_raw(self.directory / "c.wav", bytes(120), channels=6), "6 channels"
        )

    def test_no_audio(self) -> None:
        """A valid header with no samples is an error, not a silent prompt."""
        self.assertProblem(write_raw(self.directory / "z.wav", b""), "no audio")

    def test_unreadable(self) -> None:
        """A file we may not read says permission denied."""
        if os.geteuid() == 0:
            raise self.skipTest("running as root: file permissions do not apply")
        path = write_raw(self.directory / "p.wav", bytes(10))
        path.chmod(0)
        self.assertProblem(path, "permission denied")


class WriteWavTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.directory.mkdir()

    def test_round_trip(self) -> None:
        """Written samples read back identical, as mono 16-bit at the given rate."""
        samples = (
            np.random.default_rng(1).integers(-32768, 32767, 1000).astype(np.int16)
        )
        path = write_wav(self.directory / "x.wav", samples, 12000)
        audio = read_wav(path)
        self.assertEqual(audio.samples.tolist(), samples.tolist())
        self.assertEqual(audio.sample_rate, 12000)
        self.assertEqual(path.stat().st_mode & 0o777, 0o644)

    def test_atomic_leaves_no_temporary(self) -> None:
        """Only the target remains in the directory; the mode is the one asked for."""
        write_wav(self.directory / "y.wav", np.zeros(10), 8000, mode=0o640)
        self.assertEqual([p.name for p in self.directory.iterdir()], ["y.wav"])
        self.assertEqual((self.directory / "y.wav").stat().st_mode & 0o777, 0o640)

    def test_failure_cleans_up(self) -> None:
        """A failed write leaves neither a partial file nor a temporary one."""
        self.assertRaises(
            ValueError, write_wav, self.directory / "w.wav", np.zeros(4), 1000
        )
        (self.directory / "d.wav").mkdir()  # renaming over it fails
        self.assertRaises(
            OSError, write_wav, self.directory / "d.wav", np.zeros(4), 8000
        )
        self.assertEqual([p.name for p in self.directory.iterdir()], ["d.wav"])
        self.assertEqual(list((self.directory / "d.wav").iterdir()), [])
