"""Reports a reader can take in: a ten-loss table fits a terminal, intervals on request, raw-pixel
dimensions, and approximate evaluations labelled."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from report_runs import make_run, seeds

from dmlbench.reporting import report
from dmlbench.rundir import MetricsRecord

TEN_LOSSES = (
    "triplet",
    "lifted",
    "npairs",
    "clustering",
    "contrastive",
    "multisimilarity",
    "proxyanchor",
    "normsoftmax",
    "arcface",
    "supcon",
)
METRICS = ("recall@1", "recall@2", "recall@4", "recall@8", "precision@1", "r_precision", "map@r", "nmi", "f1")


def ten_loss_runs(root: Path) -> None:
    rng = np.random.default_rng(0)
    for loss in TEN_LOSSES:
        values = [{m: float(rng.uniform(0.05, 0.999)) for m in METRICS} for _ in range(3)]
        seeds(root, loss, values, loss=loss)


def test_ten_loss_markdown_table_fits_160_columns(tmp_path: Path) -> None:
    ten_loss_runs(tmp_path)
    text = report([tmp_path], fmt="markdown")
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(TEN_LOSSES)
    assert max(len(line) for line in table) <= 160, max(table, key=len)
    assert "±" in table[2] and "[" not in table[2]  # mean ± sd, no interval by default
    assert any("▲" in line for line in table)  # the best still marked
    wide = report([tmp_path], fmt="markdown", intervals=True)
    assert any("[" in line and line.startswith("| triplet") for line in wide.splitlines())
    assert "--intervals" in text and "logit scale" in wide


def test_raw_baseline_row_shows_the_pixel_dimension(tmp_path: Path) -> None:
    seeds(tmp_path, "clustering", [{"recall@1": 0.8}, {"recall@1": 0.81}], loss="clustering")
    raw = make_run(tmp_path, "digits-raw", {"recall@1": 0.5}, kind="baseline", baseline="raw")
    raw.write_metrics(
        MetricsRecord(run_id="digits-raw", split="test", metrics={"recall@1": 0.5}, embedding_dim=64 * 64),
        merge=False,
    )
    data = json.loads(report([tmp_path], fmt="json"))
    table = data["datasets"][0]
    rows = {row["keys"]["loss"]: row for row in table["rows"]}
    assert rows["raw"]["keys"]["embedding_dim"] == "4096"
    assert rows["clustering"]["keys"]["embedding_dim"] == "64"
    assert table["protocol"]["embedding_dim"] == "64"  # the models' embedding, not the pixels


def test_approximate_evaluations_are_marked_and_explained(tmp_path: Path) -> None:
    seeds(tmp_path, "clustering", [{"recall@1": 0.8, "nmi": 0.6}], loss="clustering")
    run = make_run(tmp_path, "triplet-seed0", {"recall@1": 0.7, "nmi": 0.5}, loss="triplet")
    run.write_metrics(
        MetricsRecord(
            run_id="triplet-seed0",
            split="test",
            metrics={"recall@1": 0.7, "nmi": 0.5},
            intervals={"recall@1": [0.68, 0.72]},
            approximation={"queries": {"sampled": 1000, "of": 5000, "seed": 0, "intervals": "95%: Wilson"}},
        ),
        merge=False,
    )
    for fmt in ("markdown", "html", "latex", "json"):
        text = report([tmp_path], fmt=fmt)
        assert "a seeded sample of 1,000 of 5,000 queries" in text, fmt
    markdown = report([tmp_path], fmt="markdown")
    triplet = next(line for line in markdown.splitlines() if line.startswith("| triplet"))
    cells = [c.strip() for c in triplet.strip("|").split("|")]
    assert cells[-1].startswith("70.00§") and "§" not in cells[-2]  # R@1 sampled, NMI exact
