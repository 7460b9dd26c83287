"""Baseline, tuned and ensemble rows in every format; trials are never rows."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from report_runs import make_run, seeds

from dmlbench.reporting import report


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    seeds(root, "clustering", [{"recall@1": 0.95, "nmi": 0.80}, {"recall@1": 0.96, "nmi": 0.82}])
    seeds(root, "triplet", [{"recall@1": 0.85, "nmi": 0.70}, {"recall@1": 0.86, "nmi": 0.72}], loss="triplet")
    make_run(root, "baselines/digits-raw", {"recall@1": 0.90, "nmi": 0.75}, kind="baseline", baseline="raw")
    make_run(
        root, "baselines/digits-untrained", {"recall@1": 0.70, "nmi": 0.805}, kind="baseline", baseline="untrained"
    )
    tuned = {"study": "digits-triplet", "tuned_params": {"optim.lr": 0.00031, "loss.margin": 0.2}, "tuning_trials": 12}
    for seed, value in enumerate((0.97, 0.98)):
        make_run(
            root,
            f"tune/digits-triplet/final-seed{seed}",
            {"recall@1": value, "nmi": 0.85},
            loss="triplet",
            seed=seed,
            overrides=["optim.lr=0.00031", "loss.margin=0.2"],
            kind="final",
            **tuned,
        )
    make_run(
        root,
        "tune/digits-triplet/ensemble",
        {"recall@1": 0.99, "nmi": 0.86},
        loss="triplet",
        overrides=["optim.lr=0.00031", "loss.margin=0.2"],
        kind="ensemble",
        **tuned,
    )
    for number in range(3):  # validation-only; never a row, even with metrics
        make_run(
            root, f"tune/digits-triplet/trial-{number}", {"recall@1": 0.5}, loss="triplet", kind="trial", trial=number
        )
    return root


def test_json_rows(runs: Path) -> None:
    data = json.loads(report([runs], fmt="json"))
    (table,) = data["datasets"]
    found = [(row["kind"], row["keys"]["loss"], row["n"]) for row in table["rows"]]
    assert found == [
        ("baseline", "raw", 1),
        ("baseline", "untrained", 1),
        ("reproduced", "triplet", 2),
        ("reproduced", "clustering", 2),
        ("tuned", "triplet", 2),
        ("ensemble", "triplet", 1),
    ]
    tuned = table["rows"][4]
    assert tuned["tuning"] == {
        "study": "digits-triplet",
        "params": {"optim.lr": 0.00031, "loss.margin": 0.2},
        "trials": 12,
    }
    assert not any(row["values"]["recall@1"]["best"] for row in table["rows"][:2])  # baselines are never best
    assert table["rows"][5]["values"]["recall@1"]["best"] is True
    assert data["tuning_trials"] == 3
    assert not any("trial-" in run for row in table["rows"] for run in row["runs"])


def test_note_names_the_losses_that_do_not_beat_the_baselines(runs: Path) -> None:
    notes = json.loads(report([runs], fmt="json"))["notes"]
    beaten = [line for line in notes if "does not beat the baselines" in line]
    assert beaten == [
        "digits: triplet does not beat the baselines: R@1 85.50 ≤ 90.00 (raw); NMI 71.00 ≤ 80.50 (untrained)."
    ]


def test_every_text_format_shows_baselines_and_tuned_rows(runs: Path) -> None:
    markdown = report([runs], fmt="markdown")
    for label in ("| raw (baseline)", "| untrained (baseline)", "| triplet (tuned)", "| triplet (ensemble)"):
        assert label in markdown
    assert "study digits-triplet, 12 trials: loss.margin=0.2, optim.lr=0.00031" in markdown
    assert "3 tuning trial runs are not rows" in markdown

    latex = report([runs], fmt="latex")
    lines = latex.splitlines()
    untrained = next(i for i, line in enumerate(lines) if line.startswith("untrained (baseline)"))
    assert lines[untrained + 1] == r"\midrule"  # baselines are a block of their own
    assert "triplet (tuned)" in latex and "triplet (ensemble)" in latex

    rows = list(csv.DictReader(io.StringIO(report([runs], fmt="csv"))))
    assert [(r["row"], r["loss"]) for r in rows][:2] == [("baseline", "raw"), ("baseline", "untrained")]
    assert rows[4]["tuning"].startswith("study digits-triplet, 12 trials")

    page = report([runs], fmt="html")
    assert page.count('<tr class="baseline">') == 2
    assert page.count('<tr class="tuned">') == 1 and page.count('<tr class="ensemble">') == 1


def test_a_root_of_trials_only_is_a_clear_error(runs: Path) -> None:
    from dmlbench.errors import MissingInputError

    trials = [runs / "tune" / "digits-triplet" / f"trial-{n}" for n in range(3)]
    with pytest.raises(MissingInputError, match="no complete DML runs"):
        report(trials, fmt="markdown")
