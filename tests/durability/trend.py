"""
The growth trend of a sampled quantity (memory, for the soak), as the
least-squares slope over the samples after a warm-up.

A server's memory climbs while its bounded caches fill (recently ended
UUIDs, SQLite's page cache, the allocator's arenas) and then stays level;
a leak keeps climbing.  So the slope is taken only after ``warmup`` and only
judged over a window long enough for noise to average out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from attrs import frozen

__all__ = ["Trend", "trend"]


@frozen
class Trend:
    """Growth per minute over ``start``..``end`` (minutes), from ``samples``."""

    slope: float
    start: float
    end: float
    samples: int

    @property
    def minutes(self) -> float:
        return self.end - self.start


def trend(
    times: Sequence[float], values: Sequence[float], warmup: float
) -> Trend | None:
    """The slope per minute of ``values`` over ``times`` (seconds) after
    ``warmup`` seconds; None with fewer than three samples there."""
    t = np.asarray(times, dtype=float)
    v = np.asarray(values, dtype=float)
    if t.shape != v.shape:
        raise ValueError(f"{t.size} times but {v.size} values")
    after = t >= warmup
    if after.sum() < 3 or np.ptp(t[after]) == 0:
        return None
    minutes = t[after] / 60
    slope = float(np.polyfit(minutes, v[after], 1)[0])
    return Trend(slope, float(minutes[0]), float(minutes[-1]), int(after.sum()))
