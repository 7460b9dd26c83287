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


# A value exactly at a bound has an infinite logit: it is moved inside by half the last printed digit
# of a percentage (0.005 points), which keeps the interval finite and leaves the printed mean unchanged.
_BOUND_NUDGE = 0.00005


def bounded_t_interval(
    values: Sequence[float], low: float, high: float, confidence: float = CONFIDENCE
) -> tuple[float, float] | None:
    """Student-t interval on the logit scale of values bounded in [low, high], mapped back: always inside.

    A plain t interval of a metric near its bound leaves the range (98.79 ± 0.76 gave [96.89, 100.69]).
    The logit maps (low, high) onto the whole line, the t interval is taken there (n - 1 degrees of
    freedom, as for the plain one) and mapped back, so it is asymmetric near a bound. None when n < 2.
    """
    if len(values) < 2 or not all(math.isfinite(v) for v in values) or not high > low:
        return None
    span = high - low
    fractions = [min(max((v - low) / span, _BOUND_NUDGE), 1.0 - _BOUND_NUDGE) for v in values]
    logits = [math.log(p / (1.0 - p)) for p in fractions]
    interval = t_interval(logits, confidence)
    if interval is None:
        return None

    def back(x: float) -> float:
        return low + span / (1.0 + math.exp(-x))

    return back(interval[0]), back(interval[1])


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
