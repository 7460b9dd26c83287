"""The vectorised clustering scores equal scikit-learn's, edge cases included."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn import metrics

from dmlbench.losses._scores import ScoreTables, clustering_score

SKLEARN = {
    "nmi": lambda a, b, avg: metrics.normalized_mutual_info_score(a, b, average_method=avg),
    "ami": lambda a, b, avg: metrics.adjusted_mutual_info_score(a, b, average_method=avg),
    "ari": lambda a, b, avg: metrics.adjusted_rand_score(a, b),
    "vmeasure": lambda a, b, avg: metrics.v_measure_score(a, b),
}

EDGE_CASES = [
    ([0, 0, 0, 0], [1, 1, 1, 1]),  # one class, one cluster
    ([0, 0, 0, 0], [0, 1, 2, 3]),  # one class, all singletons
    ([0, 1, 2, 3], [5, 5, 5, 5]),  # all singletons, one cluster
    ([0, 1, 2, 3], [3, 2, 1, 0]),  # all singletons both sides
    ([7], [3]),  # a single sample
    ([], []),  # empty
    ([0, 0, 1, 1], [0, 1, 0, 1]),  # independent: MI = 0
    ([0, 0, 1, 1], [1, 1, 0, 0]),  # perfect match, permuted
    ([-5, -5, 9, 9, 100], [2, 2, 2, 40, 40]),  # negative and non-contiguous values
]


def _random_cases(count: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(count):
        n = int(rng.integers(2, 70))
        a = rng.integers(0, int(rng.integers(1, 15)), n) * 3 - 7
        b = rng.integers(0, int(rng.integers(1, 15)), n) + 1000
        if rng.random() < 0.2:
            b = a * 2  # relabelled perfect match
        cases.append((a, b))
    return cases


@pytest.mark.parametrize(
    ("margin_type", "average"),
    [
        ("nmi", "arithmetic"),
        ("nmi", "geometric"),
        ("ami", "arithmetic"),
        ("ami", "geometric"),
        ("ari", ""),
        ("vmeasure", ""),
    ],
)
def test_scores_match_sklearn(margin_type: str, average: str) -> None:
    average = average or "arithmetic"  # ARI and V-measure have no normalisation choice
    cases = [(np.array(a, dtype=np.int64), np.array(b, dtype=np.int64)) for a, b in EDGE_CASES]
    for a, b in cases + _random_cases(150, seed=1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = SKLEARN[margin_type](a, b, average)
        got = clustering_score(torch.from_numpy(a), torch.from_numpy(b), margin_type, average)
        assert got == pytest.approx(expected, abs=1e-9, rel=0), (margin_type, average, a.tolist(), b.tolist())


def test_documented_edge_values() -> None:
    one = torch.zeros(5, dtype=torch.int64)
    singletons = torch.arange(5)
    for margin_type in ("nmi", "ami", "vmeasure"):
        assert clustering_score(one, one + 3, margin_type) == 1.0
        assert clustering_score(one, singletons, margin_type) == 0.0
        assert clustering_score(singletons, one, margin_type) == 0.0
    assert clustering_score(singletons, singletons.flip(0), "ami") == 1.0
    assert clustering_score(one, one, "ari") == 1.0


def test_batched_stats_equal_single_stats() -> None:
    """Scoring C labellings in one call gives each one's own score (no cross-talk between candidates)."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 6, (40,), generator=gen)
    _, labels = torch.unique(labels, return_inverse=True)
    assignments = torch.randint(0, 9, (25, 40), generator=gen)
    for margin_type in ("nmi", "ami", "ari", "vmeasure"):
        tables = ScoreTables(labels, int(labels.max()) + 1, margin_type)
        batched = tables.score(tables.stats_of(assignments, 9))
        for row in range(assignments.shape[0]):
            single = clustering_score(labels, assignments[row], margin_type)
            assert float(batched[row]) == pytest.approx(single, abs=1e-12)


def test_unknown_names_are_rejected() -> None:
    labels = torch.zeros(3, dtype=torch.int64)
    with pytest.raises(ValueError, match="margin type"):
        ScoreTables(labels, 1, "const")
    with pytest.raises(ValueError, match="average"):
        ScoreTables(labels, 1, "nmi", "max")


def test_incremental_stats_equal_full_stats() -> None:
    """`stats_of_changes` (used by PAM) scores clusterings that differ from a base exactly like `stats_of`."""
    gen = torch.Generator().manual_seed(3)
    n, k = 30, 6
    labels = torch.randint(0, 5, (n,), generator=gen)
    _, labels = torch.unique(labels, return_inverse=True)
    base = torch.cat([torch.arange(k), torch.randint(0, k, (n - k,), generator=gen)])
    variants = base.repeat(12, 1)
    for row in range(1, 12):  # row 0 unchanged; others move a few non-anchor points
        moved = torch.randint(k, n, (row % 5 + 1,), generator=gen)
        variants[row, moved] = torch.randint(0, k, (moved.numel(),), generator=gen)
    for margin_type in ("nmi", "ami", "ari", "vmeasure"):
        tables = ScoreTables(labels, int(labels.max()) + 1, margin_type)
        full = tables.score(tables.stats_of(variants, k))
        incremental = tables.score(tables.stats_of_changes(base, variants, k))
        torch.testing.assert_close(incremental, full, rtol=0, atol=1e-12)
