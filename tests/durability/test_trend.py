"""The soak's trend: a level series after a warm-up is flat, a leak is not."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from .trend import trend


class TrendTests(SynchronousTestCase):
    def test_warmup_ignored(self) -> None:
        """A climb that levels off is flat once the warm-up is skipped."""
        t = np.arange(0, 1800, 5.0)
        rss = np.minimum(t, 720) * 10 + 56_000  # +10 KiB/s for 12 min, then level
        result = trend(t, rss, warmup=900)
        assert result is not None
        self.assertAlmostEqual(result.slope, 0.0, places=6)
        self.assertEqual((result.start, result.end), (15.0, t[-1] / 60))
        self.assertEqual(result.samples, 180)
        self.assertGreater(trend(t, rss, warmup=0).slope, 100)  # type: ignore[union-attr]

    def test_leak_under_noise(self) -> None:
        """A leak of 3,000 blocks/min shows over a minute of noisy samples."""
        rng = np.random.default_rng(1)
        t = np.arange(0, 120, 1.0)
        noise = rng.normal(0, 1_000, t.size)
        leaking = trend(t, 260_000 + 50 * t + noise, warmup=60)
        level = trend(t, 260_000 + noise, warmup=60)
        assert leaking is not None and level is not None
        self.assertLess(abs(leaking.slope - 3_000), 1_000)
        self.assertLess(abs(level.slope), 1_000)

    def test_too_few_samples(self) -> None:
        """Fewer than three samples after the warm-up: no trend."""
        self.assertIsNone(trend([0, 10, 20, 30], [1, 2, 3, 4], warmup=25))
        self.assertIsNone(trend([], [], warmup=0))
        self.assertIsNone(trend([5, 5, 5], [1, 2, 3], warmup=0))

    def test_lengths_must_match(self) -> None:
        self.assertRaises(ValueError, trend, [0, 1, 2], [1, 2], 0)

    @given(
        slope=st.floats(-1e4, 1e4),
        level=st.floats(0, 1e8),
        n=st.integers(3, 200),
    )
    def test_exact_line(self, slope: float, level: float, n: int) -> None:
        """The slope of a straight line is its slope per minute."""
        t = np.arange(n) * 5.0
        result = trend(t, level + slope * t / 60, warmup=0)
        assert result is not None
        self.assertLessEqual(abs(result.slope - slope), 1e-6 * (1 + level))
