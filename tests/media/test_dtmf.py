"""Tests for gatekeeper.media.dtmf: the Goertzel detector's figures and rules."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from gatekeeper.media.dtmf import (
    DIGITS,
    DtmfDetector,
    DtmfSettings,
    dtmf_sequence,
    dtmf_tone,
)
from gatekeeper.media.resample import samples_to_pcm
from tests.media.signals import speech_like, white_noise


def detection_rate(
    rng: np.random.Generator, presses: int, snr_db: float, rate: int = 8000
) -> tuple[float, int]:
    """
    Share of key presses reported exactly once, and wrong digits reported.

    Each press is 50 ms of tone and 50 ms of gap (faster than any keypad),
    with up to 3 dB of twist either way and the 1.5 % frequency error the
    standard allows, in white noise ``snr_db`` below the tones' power.
    """
    detector = DtmfDetector(rate)
    frame = rate // 50
    hits = wrong = 0
    for _ in range(presses):
        digit = DIGITS[rng.integers(len(DIGITS))]
        tone = dtmf_tone(
            digit,
            rate,
            0.05,
            -16.0,
            twist_db=rng.uniform(-3, 3),
            frequency_error=rng.uniform(-0.015, 0.015),
        )
        press = np.concatenate([tone, np.zeros(tone.size)])
        press += rng.normal(
            0, np.sqrt(np.mean(tone**2) / 10 ** (snr_db / 10)), press.size
        )
        heard = [
            d
            for i in range(0, press.size, frame)
            for d in detector.feed(press[i : i + frame])
        ]
        hits += heard == [digit]
        wrong += sum(d != digit for d in heard)
    return hits / presses, wrong


def false_digits(
    rng: np.random.Generator, seconds: float, dtmf: DtmfSettings | None = None
) -> list[str]:
    """Digits reported in speech-like talk with a little line noise, fed in 20 ms frames."""
    talk = speech_like(rng, seconds, 8000, -20.0) + white_noise(
        rng, seconds, 8000, -55.0
    )
    pcm = samples_to_pcm(talk)
    detector = DtmfDetector(8000, dtmf)
    return [
        d for i in range(0, len(pcm), 320) for d in detector.feed_pcm(pcm[i : i + 320])
    ]


class DetectionFiguresTests(SynchronousTestCase):
    def test_detects_99_percent_at_10_db_snr(self) -> None:
        """At 10 dB SNR at least 99 % of 1000 key presses are reported, none wrongly."""
        rate, wrong = detection_rate(np.random.default_rng(2024), 1000, 10.0)
        self.assertGreaterEqual(rate, 0.99)
        self.assertEqual(wrong, 0)

    def test_no_false_digits_in_a_minute_of_talk(self) -> None:
        """A minute of speech-like talk yields no digit."""
        self.assertEqual(false_digits(np.random.default_rng(1), 60.0), [])

    def test_talk_is_a_real_challenge(self) -> None:
        """Without the share and duration checks the same talk produces digits."""
        loose = DtmfSettings(tone_share=0.0, min_duration=0.0)
        self.assertNotEqual(false_digits(np.random.default_rng(1), 60.0, loose), [])

    def test_every_digit_at_every_rate(self) -> None:
        """All 16 keys are recognised at 8, 16, 44.1 and 48 kHz, in order."""
        for rate in (8000, 16000, 44100, 48000):
            detector = DtmfDetector(rate)
            signal = dtmf_sequence(DIGITS, rate, on=0.06, off=0.06)
            self.assertEqual("".join(detector.feed(signal)), DIGITS, rate)


class DetectionRulesTests(SynchronousTestCase):
    def heard(
        self, signal: np.ndarray, rate: int = 8000, dtmf: DtmfSettings | None = None
    ) -> str:
        return "".join(DtmfDetector(rate, dtmf).feed(signal))

    def test_one_digit_per_press(self) -> None:
        """A key held for 2 s in noise is reported once; a second press once more."""
        rng = np.random.default_rng(3)
        held = np.concatenate(
            [
                dtmf_tone("5", 8000, 2.0, -16),
                np.zeros(400),
                dtmf_tone("5", 8000, 0.1, -16),
            ]
        )
        held += white_noise(rng, held.size / 8000, 8000, -35)
        self.assertEqual(self.heard(held), "55")

    def test_minimum_duration(self) -> None:
        """A 40 ms tone is always caught, a 20 ms one never, wherever it falls."""
        for lead in range(0, 102, 7):
            pad = np.zeros(lead)
            self.assertEqual(
                self.heard(np.concatenate([pad, dtmf_tone("7", 8000, 0.04), pad])),
                "7",
                lead,
            )
            self.assertEqual(
                self.heard(np.concatenate([pad, dtmf_tone("7", 8000, 0.02), pad])),
                "",
                lead,
            )

    def test_twist_limits(self) -> None:
        """Row 6 dB over column passes, 10 dB fails; column 3 dB over row passes, 6 dB fails."""
        self.assertEqual(self.heard(dtmf_tone("1", 8000, 0.1, twist_db=6)), "1")
        self.assertEqual(self.heard(dtmf_tone("1", 8000, 0.1, twist_db=10)), "")
        self.assertEqual(self.heard(dtmf_tone("1", 8000, 0.1, twist_db=-3)), "1")
        self.assertEqual(self.heard(dtmf_tone("1", 8000, 0.1, twist_db=-6)), "")

    def test_frequency_tolerance(self) -> None:
        """Keys off by 1.5 % are accepted; off by 5 % they are not."""
        for error in (-0.015, 0.015):
            self.assertEqual(
                self.heard(dtmf_tone("9", 8000, 0.1, frequency_error=error)), "9"
            )
        for error in (-0.05, 0.05):
            self.assertEqual(
                self.heard(dtmf_tone("9", 8000, 0.1, frequency_error=error)), ""
            )

    def test_single_tone_and_quiet_rejected(self) -> None:
        """One tone alone, or a key press below -40 dBFS, is not a digit."""
        times = np.arange(800) / 8000
        self.assertEqual(self.heard(8000 * np.sin(2 * np.pi * 770 * times)), "")
        self.assertEqual(self.heard(dtmf_tone("3", 8000, 0.1, level_dbfs=-50)), "")
        self.assertEqual(self.heard(dtmf_tone("3", 8000, 0.1, level_dbfs=-30)), "3")

    def test_three_tones_rejected(self) -> None:
        """A key press with a strong third tone fails the energy-share check."""
        times = np.arange(800) / 8000
        chord = dtmf_tone("2", 8000, 0.1) + 10000 * np.sin(2 * np.pi * 2200 * times)
        self.assertEqual(self.heard(chord), "")

    def test_dc_offset_ignored(self) -> None:
        """A DC offset on the line does not hide a key press."""
        self.assertEqual(self.heard(dtmf_tone("#", 8000, 0.1) + 5000), "#")

    def test_bad_digit(self) -> None:
        """Only the 16 DTMF keys can be generated."""
        self.assertRaises(ValueError, dtmf_tone, "E", 8000)
        self.assertEqual(dtmf_sequence("", 8000).size, 0)
        self.assertEqual(dtmf_sequence("a", 8000).size, 1600)

    @settings(
        deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=20))
    def test_chunking_does_not_matter(self, sizes: list[int]) -> None:
        """Audio cut anywhere yields the same digits as one piece."""
        signal = dtmf_sequence("159#", 8000, on=0.05, off=0.05)
        detector = DtmfDetector(8000)
        heard: list[str] = []
        start = 0
        while start < signal.size:
            for size in sizes:
                heard += detector.feed(signal[start : start + size])
                start += size
        self.assertEqual("".join(heard), "159#")
        self.assertEqual(
            DtmfDetector(8000).feed_pcm(samples_to_pcm(signal)), list("159#")
        )
