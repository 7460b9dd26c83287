"""Statistics against scipy on fixed numbers: the Student-t interval, Welch's test, and their use."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from report_runs import seeds
from scipy import stats

from dmlbench.reporting import report
from dmlbench.reporting.stats import bounded_t_interval, t_interval, welch_p_value

A = [71.2, 73.9, 72.4]
B = [69.0, 74.8, 70.1, 72.2]
C = [60.1, 61.3, 60.7]


@pytest.mark.parametrize("values", [A, B, C, [1.0, 2.0], [5.5, 5.5, 5.6, 5.4, 5.9]])
def test_t_interval_matches_scipy(values: list[float]) -> None:
    low, high = stats.t.interval(0.95, len(values) - 1, loc=stats.tmean(values), scale=stats.sem(values))
    assert t_interval(values) == pytest.approx((low, high), rel=1e-12)


@pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")  # scipy, on the constant sample
@pytest.mark.parametrize(("a", "b"), [(A, B), (A, C), (B, C), ([1.0, 1.0, 1.0], [0.5, 1.5])])
def test_welch_matches_scipy(a: list[float], b: list[float]) -> None:
    expected = stats.ttest_ind(a, b, equal_var=False).pvalue
    assert welch_p_value(a, b) == pytest.approx(expected, rel=1e-10)
    assert welch_p_value(b, a) == pytest.approx(expected, rel=1e-10)


def test_untestable_inputs() -> None:
    assert t_interval([70.0]) is None  # n = 1: no interval
    assert t_interval([]) is None
    assert welch_p_value([70.0], A) is None
    assert welch_p_value([1.0, 1.0], [2.0, 2.0]) is None  # zero variance on both sides
    assert welch_p_value(A, [1.0, float("nan")]) is None


def test_report_intervals_and_significance_marks(tmp_path: Path) -> None:
    """Best = clustering (A); triplet (B) is not significantly worse, lifted (C) is."""
    for loss, values in (("clustering", A), ("triplet", B), ("lifted", C)):
        seeds(tmp_path, loss, [{"recall@1": v / 100} for v in values], loss=loss)
    seeds(tmp_path, "npairs", [{"recall@1": 0.99}], loss="npairs")
    data = json.loads(report([tmp_path], fmt="json"))
    cells = {row["keys"]["loss"]: row["values"]["recall@1"] for row in data["datasets"][0]["rows"]}
    logits = np.log(np.array(A) / (100 - np.array(A)))  # the interval is a t interval on the logit scale
    low, high = stats.t.interval(0.95, 2, loc=logits.mean(), scale=stats.sem(logits))
    back = [100 / (1 + np.exp(-x)) for x in (low, high)]
    assert cells["clustering"]["ci95"] == [round(float(back[0]), 4), round(float(back[1]), 4)]
    assert cells["npairs"]["ci95"] is None and cells["npairs"]["std"] is None  # n = 1
    assert cells["npairs"]["best"] is True  # the highest mean is the best even when untestable
    # Against an untestable best nothing can be marked; drop it and test again.
    (tmp_path / "npairs-seed0" / "eval" / "test" / "metrics.json").unlink()
    data = json.loads(report([tmp_path], fmt="json"))
    cells = {row["keys"]["loss"]: row["values"]["recall@1"] for row in data["datasets"][0]["rows"]}
    assert cells["clustering"]["best"] is True
    p_triplet = stats.ttest_ind(A, B, equal_var=False).pvalue
    p_lifted = stats.ttest_ind(A, C, equal_var=False).pvalue
    assert p_triplet >= 0.05 > p_lifted
    assert cells["triplet"]["p_vs_best"] == pytest.approx(p_triplet, abs=1e-6)
    assert cells["triplet"]["not_significantly_worse"] is True
    assert cells["lifted"]["not_significantly_worse"] is False
    markdown = report([tmp_path], fmt="markdown")
    triplet_line = next(line for line in markdown.splitlines() if line.startswith("| triplet"))
    assert "≈" in triplet_line
    assert "Welch's t-test" in markdown


@pytest.mark.parametrize(
    "values",
    [[98.79 - 0.76, 98.79, 98.79 + 0.76], [99.9, 100.0, 99.5], [0.0, 0.4, 1.2], [100.0, 100.0], [50.0, 51.0, 49.0]],
)
def test_bounded_interval_stays_inside_the_range_and_holds_the_mean(values: list[float]) -> None:
    interval = bounded_t_interval(values, 0.0, 100.0)
    assert interval is not None
    low, high = interval
    assert 0.0 <= low <= high <= 100.0
    plain = t_interval(values)
    assert plain is not None
    if min(values) > 5.0 and max(values) < 95.0:  # far from the bounds it is close to the plain t interval
        assert (low, high) == pytest.approx(plain, abs=0.05)


def test_no_report_interval_leaves_the_metric_range(tmp_path: Path) -> None:
    # the example: 98.79 ± 0.76 gave [96.89, 100.69] with a plain t interval
    seeds(tmp_path, "clustering", [{"recall@1": v / 100} for v in (98.03, 98.79, 99.55)], loss="clustering")
    seeds(tmp_path, "triplet", [{"recall@1": v / 100} for v in (0.1, 0.0, 0.9)], loss="triplet")
    data = json.loads(report([tmp_path], fmt="json"))
    for row in data["datasets"][0]["rows"]:
        low, high = row["values"]["recall@1"]["ci95"]
        assert 0.0 <= low <= high <= 100.0
