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
        # seeds of one loss agree to a few points, as real ones do (glyphs: sd 0.1 to 13 points)
        centre = {m: float(rng.uniform(0.05, 0.95)) for m in METRICS}
        values = [{m: float(np.clip(c + rng.normal(0, 0.04), 0, 1)) for m, c in centre.items()} for _ in range(3)]
        seeds(root, loss, values, loss=loss)


def test_ten_loss_markdown_table_fits_160_columns(tmp_path: Path) -> None:
    ten_loss_runs(tmp_path)
    # a raw-pixel baseline of another dimension says so in its own cell, not by widening every row
    raw = make_run(tmp_path, "digits-raw", {"recall@1": 0.5}, kind="baseline", baseline="raw")
    raw.write_metrics(
        MetricsRecord(run_id="digits-raw", split="test", metrics={m: 0.5 for m in METRICS}, embedding_dim=1024),
        merge=False,
    )
    make_run(tmp_path, "digits-untrained", {m: 0.3 for m in METRICS}, kind="baseline", baseline="untrained")
    text = report([tmp_path], fmt="markdown")
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) == 4 + len(TEN_LOSSES)
    assert any(line.startswith("| raw (baseline, 1024-d)") for line in table)
    assert "| dim" not in table[0]
    assert max(len(line) for line in table) <= 160, max(table, key=len)
    triplet = next(line for line in table if line.startswith("| triplet"))
    assert "±" in triplet and "[" not in triplet  # mean ± sd, no interval by default
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
