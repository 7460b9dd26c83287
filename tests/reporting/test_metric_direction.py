"""Reports read each metric's label, range and direction from the metric table (evaluation/metrics.py).

A test-only lower-is-better metric, registered in that table, is computed by `evaluate_embeddings` without
any other change, and the report marks its smallest mean as the best.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from report_runs import seeds

from dmlbench.evaluation import evaluate_embeddings
from dmlbench.evaluation import metrics as M
from dmlbench.reporting.collect import collect
from dmlbench.reporting.render import render_markdown
from dmlbench.reporting.tables import build_report

ERROR = "error@1"


@pytest.fixture
def error_metric(monkeypatch: pytest.MonkeyPatch) -> Iterator[M.MetricInfo]:
    """error@1 = 1 - P@1: the share of queries whose nearest item is of another class (lower is better)."""
    info = M.MetricInfo(
        ERROR,
        "Err@1",
        False,
        "knn",
        "fraction of queries whose nearest item is of another class",
        per_query=lambda hits: 1.0 - hits.relevant[:, 0].astype(np.float64),
        interval="wilson",
    )
    monkeypatch.setitem(M.METRICS, ERROR, info)
    yield info


def test_a_registered_metric_is_computed_from_its_table_entry(error_metric: M.MetricInfo) -> None:
    rng = np.random.default_rng(0)
    x = (np.repeat(rng.normal(size=(6, 8)), 5, axis=0) + 0.9 * rng.normal(size=(30, 8))).astype(np.float32)
    y = np.repeat(np.arange(6), 5)
    values = evaluate_embeddings(x, y, metrics=["precision@1", ERROR], device="cpu").metrics
    assert list(values) == ["precision@1", ERROR]
    assert values[ERROR] == pytest.approx(1.0 - values["precision@1"])
    assert 0.0 < values[ERROR] < 1.0  # neither trivially perfect nor trivially wrong: the test can fail


def test_best_of_a_lower_is_better_metric_is_the_minimum(tmp_path: Path, error_metric: M.MetricInfo) -> None:
    seeds(
        tmp_path, "digits-triplet", [{ERROR: 0.20, "recall@1": 0.70}, {ERROR: 0.22, "recall@1": 0.72}], loss="triplet"
    )
    seeds(
        tmp_path,
        "digits-clustering",
        [{ERROR: 0.50, "recall@1": 0.80}, {ERROR: 0.52, "recall@1": 0.82}],
        loss="clustering",
    )
    report = build_report(collect([tmp_path]), metrics=[ERROR, "recall@1"])
    (table,) = report.tables
    rows = {row.keys["loss"]: row for row in table.rows}
    assert rows["triplet"].cells[ERROR].best and not rows["clustering"].cells[ERROR].best  # the minimum
    assert rows["clustering"].cells["recall@1"].best and not rows["triplet"].cells["recall@1"].best  # the maximum
    text = render_markdown(report)
    assert "Err@1" in text  # the table's label
    assert "lower is better for Err@1" in text and "every metric is higher-is-better" not in text


def test_values_outside_a_metric_range_are_flagged(tmp_path: Path, error_metric: M.MetricInfo) -> None:
    seeds(tmp_path, "digits-triplet", [{ERROR: 1.5}, {ERROR: 0.2}], loss="triplet")
    seeds(tmp_path, "digits-clustering", [{ERROR: 0.4}, {ERROR: 0.5}], loss="clustering")
    (table,) = build_report(collect([tmp_path]), metrics=[ERROR]).tables
    rows = {row.keys["loss"]: row for row in table.rows}
    assert rows["triplet"].cells[ERROR].flagged and not rows["triplet"].cells[ERROR].best
    assert rows["clustering"].cells[ERROR].best  # the only usable candidate
