"""Tests for gatekeeper.media.vad: speech decisions, outcomes, saving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from gatekeeper.media.prompts import DEFAULT_PROMPT_DIRECTORY
from gatekeeper.media.resample import resample, samples_to_pcm
from gatekeeper.media.vad import (
    Recorder,
    Recording,
    RecordingOutcome,
    VadSettings,
    VoiceActivityDetector,
    frame_levels,
    save_recording,
)
from gatekeeper.media.wavfile import read_wav
from tests.media.signals import speech_like, white_noise
from tests.media.test_resample import assert_close

UUID = "e69439e9-1489-4bba-b55d-37612b5dffaf"


def record(
    signal: np.ndarray, rate: int = 8000, vad: VadSettings | None = None
) -> tuple[Recording, float]:
    """Feed ``signal`` in 20 ms frames; the recording and when it was done."""
    recorder = Recorder(rate, vad)
    pcm = samples_to_pcm(signal)
    frame = rate // 50 * 2
    for start in range(0, len(pcm), frame):
        result = recorder.feed(pcm[start : start + frame])
        if result is not None:
            return result, (start + frame) / 2 / rate
    return recorder.stop(), len(pcm) / 2 / rate


def visit(rng, noise_dbfs: float, rate: int = 8000, talk: float = 1.5):
    """1 s of background, ``talk`` s of speech over it, then 4 s of background."""
    speech = speech_like(rng, talk, rate, -20)
    return np.concatenate(
        [
            white_noise(rng, 1.0, rate, noise_dbfs),
            speech + white_noise(rng, talk, rate, noise_dbfs),
            white_noise(rng, 4.0, rate, noise_dbfs),
        ]
    )


class DetectorTests(SynchronousTestCase):
    def test_frame_levels(self) -> None:
        """Levels are dBFS of the variance per whole frame; DC and silence are floor."""
        signal = np.concatenate(
            [np.full(160, 1000), 16384 * np.ones(160) * (-1) ** np.arange(160)]
        )
        levels = frame_levels([*signal.tolist(), 5.0], 160)
        self.assertEqual(levels.size, 2)
        self.assertEqual(levels[0], -100.0)
        assert_close(self, levels[1], -6.02, 0.01)

    def test_floor_follows_noise(self) -> None:
        """The floor rises slowly to steady noise and drops fast when it goes."""
        detector = VoiceActivityDetector()
        detector.update(-60.0)
        for _ in range(300):  # 6 s of -40 dBFS noise
            detector.update(-40.0)
        assert_close(self, detector.noise_floor, -40.0, 0.5)
        self.assertFalse(detector.in_speech)
        for _ in range(10):  # 200 ms of quiet
            detector.update(-65.0)
        assert_close(self, detector.noise_floor, -65.0, 0.5)

    def test_onset_needs_consecutive_frames(self) -> None:
        """Speech starts after 3 loud frames in a row, not after 2."""
        detector = VoiceActivityDetector()
        for level in [-60, -60, -30, -30, -60, -30, -30]:
            self.assertFalse(detector.update(level))
        self.assertTrue(detector.update(-30))
        self.assertTrue(detector.update(-48))  # held by the smaller margin
        self.assertFalse(detector.update(-60))

    def test_quiet_line_never_speech(self) -> None:
        """Frames below the absolute minimum are never speech, whatever the floor."""
        detector = VoiceActivityDetector()
        detector.update(-100.0)
        self.assertFalse(any(detector.update(-55.0) for _ in range(50)))

    def test_settings_validated(self) -> None:
        """Nonsensical settings are refused when made."""
        self.assertRaises(ValueError, VadSettings, trailing_silence=0)
        self.assertRaises(ValueError, VadSettings, hold_db=10, onset_db=6)


class RecorderTests(SynchronousTestCase):
    def test_speech_in_noise(self) -> None:
        """At several noise levels, 1.5 s of talk is captured and ends 0.8 s after it."""
        rng = np.random.default_rng(3)
        for noise in (-70.0, -50.0, -40.0, -35.0):
            result, done_at = record(visit(rng, noise))
            self.assertIs(result.outcome, RecordingOutcome.SPEECH, noise)
            # Talk 1.0-2.5 s; kept: 0.3 s before the onset, 0.2 s after the end.
            self.assertTrue(1.4 <= result.duration <= 2.1, (noise, result.duration))
            self.assertTrue(2.9 <= done_at <= 3.4, (noise, done_at))

    def test_recording_holds_the_speech(self) -> None:
        """The kept audio is the talk: louder than the noise from start to end."""
        rng = np.random.default_rng(4)
        signal = visit(rng, -45.0)
        result, _ = record(signal)
        offset = _find(
            np.frombuffer(samples_to_pcm(signal), dtype="<i2"), result.samples
        )
        self.assertTrue(0.6 * 8000 <= offset <= 1.0 * 8000, offset)
        self.assertEqual(result.sample_rate, 8000)
        self.assertEqual(result.pcm, samples_to_pcm(result.samples))

    def test_talking_at_once(self) -> None:
        """A visitor who speaks from the very first frame is still recorded."""
        rng = np.random.default_rng(5)
        signal = np.concatenate(
            [speech_like(rng, 2.0, 8000, -20), white_noise(rng, 2, 8000, -60)]
        )
        result, done_at = record(signal + white_noise(rng, 4.0, 8000, -60))
        self.assertIs(result.outcome, RecordingOutcome.SPEECH)
        self.assertGreater(result.duration, 1.5)
        self.assertLess(done_at, 3.1)

    def test_no_speech(self) -> None:
        """Noise alone ends with NO_SPEECH at the timeout, and no audio kept."""
        rng = np.random.default_rng(6)
        for noise in (-70.0, -40.0):
            result, done_at = record(white_noise(rng, 8.0, 8000, noise))
            self.assertIs(result.outcome, RecordingOutcome.NO_SPEECH)
            self.assertEqual(done_at, 5.0)
            self.assertEqual(result.samples.size, 0)

    def test_max_length(self) -> None:
        """Talk that never stops is cut at exactly max_length."""
        rng = np.random.default_rng(7)
        signal = speech_like(rng, 10.0, 16000, -20) + white_noise(rng, 10.0, 16000, -40)
        result, _ = record(
            np.concatenate([white_noise(rng, 0.5, 16000, -40), signal]),
            16000,
            VadSettings(trailing_silence=3.0),
        )
        self.assertIs(result.outcome, RecordingOutcome.MAX_LENGTH)
        self.assertEqual(result.duration, 5.0)

    def test_configurable_times(self) -> None:
        """A shorter trailing silence and timeout end the recording sooner."""
        rng = np.random.default_rng(8)
        vad = VadSettings(trailing_silence=0.4, no_speech_timeout=2.0)
        result, done_at = record(visit(rng, -50.0), vad=vad)
        self.assertIs(result.outcome, RecordingOutcome.SPEECH)
        self.assertTrue(2.5 <= done_at <= 3.0, done_at)
        _, done_at = record(white_noise(rng, 4.0, 8000, -50), vad=vad)
        self.assertEqual(done_at, 2.0)

    def test_espeak_speech(self) -> None:
        """An espeak-ng prompt in street noise is recorded whole, at 8 and 16 kHz."""
        voice = read_wav(DEFAULT_PROMPT_DIRECTORY / "say_name.wav")
        rng = np.random.default_rng(9)
        for rate in (8000, 16000):
            words = resample(voice.samples, voice.sample_rate, rate).astype(float) * 0.3
            for noise in (-60.0, -40.0):
                signal = np.concatenate(
                    [
                        white_noise(rng, 0.7, rate, noise),
                        words + white_noise(rng, words.size / rate, rate, noise),
                        white_noise(rng, 2.0, rate, noise),
                    ]
                )
                result, done_at = record(signal, rate)
                self.assertIs(result.outcome, RecordingOutcome.SPEECH, (rate, noise))
                self.assertTrue(
                    voice.duration - 0.1 <= result.duration <= voice.duration + 0.5,
                    (rate, noise, result.duration),
                )
                end = 0.7 + voice.duration
                self.assertTrue(
                    end + 0.6 <= done_at <= end + 0.9, (rate, noise, done_at)
                )

    def test_stop_early(self) -> None:
        """stop() returns the speech so far, or NO_SPEECH before any; then it sticks."""
        recorder = Recorder(8000)
        self.assertIs(recorder.stop().outcome, RecordingOutcome.NO_SPEECH)
        self.assertTrue(recorder.done)
        rng = np.random.default_rng(10)
        recorder = Recorder(8000)
        signal = np.concatenate(
            [white_noise(rng, 0.5, 8000, -60), speech_like(rng, 1.0, 8000, -20)]
        )
        self.assertIsNone(recorder.feed(samples_to_pcm(signal)))
        result = recorder.stop()
        self.assertIs(result.outcome, RecordingOutcome.SPEECH)
        self.assertIs(recorder.feed(bytes(320)), result)
        self.assertIs(recorder.result, result)

    @settings(
        deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=30))
    def test_chunking_does_not_matter(self, sizes: list[int]) -> None:
        """Audio cut into frames of any size (even odd bytes) records the same."""
        rng = np.random.default_rng(12)
        pcm = samples_to_pcm(visit(rng, -45.0, talk=1.0))
        reference, _ = record(np.frombuffer(pcm, dtype="<i2"))
        recorder = Recorder(8000)
        start = 0
        pending = b""
        while recorder.result is None and start < len(pcm):
            for size in sizes:
                piece = pending + pcm[start : start + size]
                start += size
                whole = len(piece) - len(piece) % 2
                pending = piece[whole:]
                recorder.feed(piece[:whole])
        self.assertEqual(recorder.result.outcome, reference.outcome)
        self.assertEqual(recorder.result.samples.tolist(), reference.samples.tolist())


def _find(haystack: np.ndarray, needle: np.ndarray) -> int:
    """Where ``needle`` occurs in ``haystack`` (sample-exact)."""
    first = np.flatnonzero(haystack == needle[0])
    for offset in first:
        if np.array_equal(haystack[offset : offset + needle.size], needle):
            return int(offset)
    raise AssertionError("recording is not a slice of the input")


class SaveRecordingTests(SynchronousTestCase):
    def test_saves_as_uuid(self) -> None:
        """The recording is written as <uuid>.wav, readable, not world-readable."""
        directory = Path(self.mktemp())
        directory.mkdir()
        recording = Recording(
            RecordingOutcome.SPEECH, np.arange(100, dtype=np.int16), 16000
        )
        path = save_recording(recording, directory, UUID)
        self.assertEqual(path, directory / f"{UUID}.wav")
        audio = read_wav(path)
        self.assertEqual(audio.samples.tolist(), list(range(100)))
        self.assertEqual(audio.sample_rate, 16000)
        self.assertEqual(path.stat().st_mode & 0o777, 0o640)

    def test_refuses_non_canonical_uuid(self) -> None:
        """An uppercase or path-like UUID is refused before any file is made."""
        directory = Path(self.mktemp())
        directory.mkdir()
        recording = Recording(
            RecordingOutcome.SPEECH, np.zeros(10, dtype=np.int16), 8000
        )
        for bad in (UUID.upper(), "../etc/passwd", UUID.replace("-", "")):
            self.assertRaises(ValueError, save_recording, recording, directory, bad)
        self.assertEqual(list(directory.iterdir()), [])
