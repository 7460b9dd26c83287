"""Statistics over seeds: Student-t confidence intervals and Welch's unequal-variance t-test.

Only scipy's t distribution functions are used (`stdtrit`, `stdtr`); the statistics themselves are
written out here, so the tests can check them against `scipy.stats` independently.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

CONFIDENCE = 0.95
SIGNIFICANCE = 0.05


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Two-sided Student-t interval for the mean of `values` (n - 1 degrees of freedom); None when n < 2.

    Seeds are few (often 3), so the normal quantile 1.96 would understate the uncertainty badly.
    """
    n = len(values)
    if n < 2 or not all(math.isfinite(v) for v in values):
        return None
    from scipy.special import stdtrit

    mean = statistics.fmean(values)
    half = float(stdtrit(n - 1, 0.5 + confidence / 2.0)) * statistics.stdev(values) / math.sqrt(n)
    return (mean - half, mean + half)


def welch_p_value(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of Welch's t-test (means differ, variances may differ); None when untestable.

    Untestable: fewer than 2 values on a side, a non-finite value, or zero variance on both sides (the
    statistic is undefined, not infinitely significant).
    """
    if len(a) < 2 or len(b) < 2 or not all(math.isfinite(v) for v in (*a, *b)):
        return None
    from scipy.special import stdtr

    se_a = statistics.variance(a) / len(a)
    se_b = statistics.variance(b) / len(b)
    se2 = se_a + se_b
    if se2 <= 0.0:
        return None
    t = (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(se2)
    # Welch-Satterthwaite degrees of freedom.
    dof = se2**2 / (se_a**2 / (len(a) - 1) + se_b**2 / (len(b) - 1))
    return float(min(1.0, 2.0 * stdtr(dof, -abs(t))))
