"""Tests for gatekeeper.media.tones: frequencies, cadence, clicks."""

from __future__ import annotations

import numpy as np
from twisted.trial.unittest import SynchronousTestCase

from gatekeeper.media.resample import AUDIOSOCKET_RATES, pcm_to_samples
from gatekeeper.media.tones import beep, error_tone, ringback, silence, tone
from gatekeeper.media.vad import frame_levels


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(float) * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[spectrum.argmax()])


class ToneTests(SynchronousTestCase):
    def test_ringback_cadence(self) -> None:
        """Ringback is 1 s of 425 Hz then 4 s of silence, at every AudioSocket rate."""
        for rate in AUDIOSOCKET_RATES:
            samples = pcm_to_samples(ringback(rate))
            self.assertEqual(samples.size, 5 * rate)
            levels = frame_levels(samples, rate // 50)  # 250 frames of 20 ms
            on = np.flatnonzero(levels > -40)
            self.assertEqual((on[0], on[-1], on.size), (0, 49, 50), rate)
            self.assertEqual(dominant_frequency(samples[:rate], rate), 425.0)

    def test_ringback_is_cached(self) -> None:
        """The same PCM object serves every call at a rate."""
        self.assertIs(ringback(8000), ringback(8000))

    def test_beep(self) -> None:
        """The beep is a quarter second of 1 kHz."""
        samples = pcm_to_samples(beep(16000))
        self.assertEqual(samples.size, 4000)
        self.assertEqual(dominant_frequency(samples, 16000), 1000.0)

    def test_error_tone_rises(self) -> None:
        """The error tone is 950, 1400 then 1800 Hz, then a short pause."""
        samples = pcm_to_samples(error_tone(8000))
        step = round(0.33 * 8000)
        found = [
            dominant_frequency(samples[i * step : (i + 1) * step], 8000)
            for i in range(3)
        ]
        for got, wanted in zip(found, (950, 1400, 1800), strict=True):
            self.assertLess(abs(got - wanted), 4)
        self.assertEqual(np.abs(samples[3 * step :]).max(), 0)

    def test_fades_prevent_clicks(self) -> None:
        """Bursts start and end at zero and reach the level only after the ramp."""
        burst = tone(425, 0.1, 8000, level_dbfs=-6)
        self.assertEqual((burst[0], burst[-1]), (0, 0))
        self.assertLess(np.abs(burst[:20]).max(), np.abs(burst[40:]).max())
        self.assertLessEqual(np.abs(burst).max(), round(32767 * 10 ** (-6 / 20)))

    def test_tone_level_and_limits(self) -> None:
        """Level is the peak in dBFS; tones above Nyquist are refused."""
        self.assertEqual(
            int(np.abs(tone(1000, 1, 8000, -13)).max()), round(32767 * 10 ** (-13 / 20))
        )
        self.assertRaises(ValueError, tone, 5000, 0.1, 8000)
        self.assertEqual(silence(0.02, 48000).tolist(), [0] * 960)
