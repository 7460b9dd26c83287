"""Seeded samples and the intervals they imply: query samples, class-stratified k-means samples,
Wilson intervals for proportions and percentile-bootstrap intervals for means of bounded per-query values.

numpy (+ scipy's normal quantile) only. docs/metrics.md "Evaluation beyond exact search" states which
interval each metric gets and why.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 1000
_BOOTSTRAP_CELLS = 1 << 22  # resample indices drawn at once (32 MB of int64): bounds the bootstrap's memory


def _z(confidence: float) -> float:
    from scipy.special import ndtri

    return float(ndtri(0.5 + confidence / 2.0))


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a proportion (successes out of n), always inside [0, 1].

    Chosen over the normal (Wald) interval because that one leaves [0, 1] and covers badly near 0 and 1,
    where Recall@K of a good model lives.
    """
    if n < 1:
        raise ValueError("a proportion needs n >= 1")
    z = _z(confidence)
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exactly, not 1e-17 off by rounding
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def bootstrap_mean_interval(
    values: NDArray[np.float64], *, seed: int, resamples: int = BOOTSTRAP_RESAMPLES, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of `values` (seeded): inside [min, max] of the values.

    Per-query MAP@R and R-Precision are bounded in [0, 1] and skewed (many queries at 0 or 1), so the
    resampled means stay in range where a t interval near a bound would not. Memory stays bounded:
    resamples are drawn a few at a time.
    """
    data = np.asarray(values, dtype=np.float64)
    n = int(data.shape[0])
    if n < 1:
        raise ValueError("a mean needs at least one value")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples, dtype=np.float64)
    step = max(1, _BOOTSTRAP_CELLS // n)
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        picks = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = data[picks].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def query_sample(candidates: NDArray[np.int64], size: int, seed: int) -> NDArray[np.int64]:
    """`size` of the `candidates` (query indices), drawn without replacement from `seed`, in index order."""
    rng = np.random.default_rng(seed)
    picked = rng.choice(candidates.shape[0], size=size, replace=False)
    return np.sort(candidates[picked]).astype(np.int64)


def stratified_sample(labels: NDArray[np.int64], size: int, seed: int) -> NDArray[np.int64]:
    """`size` item indices, every class holding its proportional share (rounded up or down), in index order.

    Systematic sampling over the items ordered by class (randomly within a class) from a random start:
    each class of c items gets floor or ceil of c * size / N items, so the sample keeps the class mix
    that k-means and NMI depend on.
    """
    n = int(labels.shape[0])
    if not 1 <= size <= n:
        raise ValueError(f"sample size {size} outside 1..{n}")
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(n), labels))
    offset = float(rng.random())
    positions = np.floor((np.arange(size, dtype=np.float64) + offset) * (n / size)).astype(np.int64)
    return np.sort(order[np.minimum(positions, n - 1)]).astype(np.int64)
