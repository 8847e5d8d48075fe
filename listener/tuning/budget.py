"""What a stretch of background audio can say about a false-alarm rate.

Calibration turns "at most R false starts per day" into a number of starts allowed
on the audio it observed, and afterwards bounds the daily rate the proposal makes.
Both depend only on how long the audio was and how many starts it showed, not on
how they were found, so the arithmetic lives here: the score distribution, the
budget for the observed span, the 95% upper bound on the rate (rule of three when
nothing happened) and the span in words for the report and its caveats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DAY = 86400.0


@dataclass(frozen=True)
class Distribution:
    """Percentiles of one trigger's background scores (non-finite scores left out)."""

    windows: int
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, scores: np.ndarray) -> Distribution:
        s = np.asarray(scores, dtype=np.float64)
        s = s[np.isfinite(s)]
        if s.size == 0:
            return cls(0, math.nan, math.nan, math.nan, math.nan)
        p50, p90, p99 = np.percentile(s, [50, 90, 99])
        return cls(int(s.size), float(p50), float(p90), float(p99), float(s.max()))


@dataclass(frozen=True)
class Budget:
    """How much background was observed and how many false starts it may show."""

    observed_seconds: float
    starts: float  # rate * observed days (may be < 1)
    allowed: int  # floor(starts)

    @classmethod
    def of(cls, windows: int, hop: float, rate_per_day: float) -> Budget:
        """The budget for ``windows`` scored windows one ``hop`` apart."""
        observed = float(windows) * hop
        starts = rate_per_day * observed / DAY
        return cls(observed, starts, math.floor(starts + 1e-9))


def rate_bound(events: int, seconds: float) -> float:
    """95% upper bound on a Poisson rate per day (exact for 0: rule of three; else approx)."""
    if seconds <= 0:
        return math.inf
    days = seconds / DAY
    if events == 0:
        return 3.0 / days
    # Wilson-Hilferty approximation of the chi-square quantile for the upper bound
    k = events + 1
    z = 1.6449
    upper = k * (1 - 1 / (9 * k) + z / (3 * math.sqrt(k))) ** 3
    return upper / days


def span_text(seconds: float) -> str:
    """A duration in the unit a person reads best: s, min, h or days."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * DAY:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / DAY:.1f} days"
