"""`dmlbench status`: done / running / failed / pending per grid, study and the baselines."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from dmlbench.rundir import DatasetRecord, Manifest, MetricsRecord, RunDir


def invoke(*args: str) -> tuple[int, str, str]:
    from dmlbench.cli import app

    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def make_run(root: Path, name: str, status: str, **fields: object) -> RunDir:
    run = RunDir(root / name)
    run.root.mkdir(parents=True)
    run.write_manifest(
        Manifest(run_id=name, status=status, dataset=DatasetRecord(name="digits"), **fields)  # type: ignore[arg-type]
    )
    return run


def test_status_counts_and_last_error_lines(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    done = make_run(runs, "digits-a-seed0", "complete")
    done.write_metrics(MetricsRecord(run_id=done.run_id, split="test", metrics={"recall@1": 0.5}))
    make_run(runs, "digits-b-seed0", "complete")  # trained, never evaluated: still pending
    make_run(runs, "digits-c-seed0", "failed", error="Traceback...\nValueError: loss is nan")
    make_run(runs, "digits-d-seed0", "interrupted")
    held = make_run(runs, "digits-e-seed0", "running")
    for number, status in enumerate(["complete", "complete", "failed"]):
        make_run(
            runs / "tune" / "digits-triplet",
            f"trial-{number}",
            status,
            kind="trial",
            study="digits-triplet",
            trial=number,
        )
    (runs / "tune" / "digits-triplet" / "study.json").write_text(
        json.dumps({"trials": 5, "n_complete": 2, "n_pruned": 0, "n_failed": 1})
    )
    with held.claim(holder="test"):
        code, stdout, stderr = invoke("status", str(runs), "--json")
        assert code == 0, stderr
        groups = {g["name"]: g for g in json.loads(stdout)}
        code, table, _ = invoke("status", str(runs))
    grid = groups["digits"]
    assert (grid["kind"], grid["done"], grid["running"], grid["failed"], grid["pending"]) == ("grid", 1, 1, 1, 2)
    assert grid["errors"] == [{"run": "digits-c-seed0", "error": "ValueError: loss is nan"}]
    study = groups["digits-triplet"]
    assert (study["kind"], study["done"], study["failed"], study["target"], study["pending"]) == ("study", 2, 1, 5, 3)
    assert code == 0 and "digits-triplet" in table and "2/5" in table
    assert "failed digits-c-seed0: ValueError: loss is nan" in table
    assert held.holder() is None


def test_status_of_a_missing_folder(tmp_path: Path) -> None:
    code, stdout, stderr = invoke("status", str(tmp_path / "nope"))
    assert code == 3 and stdout == "" and "is not a folder" in stderr and "hint:" in stderr
