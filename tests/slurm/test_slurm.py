"""`--launcher slurm` against a real single-node cluster (tests/slurm/conftest.py starts it)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import slurm_jobs
from cluster import Cluster
from typer.testing import CliRunner

from dmlbench.paths import Places

pytestmark = pytest.mark.slurm


def invoke(*args: str) -> tuple[int, str, str]:
    from dmlbench.cli import app

    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def known_jobs() -> set[str]:
    """Every job the controller knows, finished ones included (MinJobAge keeps them for minutes)."""
    out = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i"], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_submit_workers_runs_each_item_once(
    slurm_cluster: Cluster, partition: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dmlbench.events import Event
    from dmlbench.launch.slurm import SlurmOptions, submit_workers, wait_with_progress

    # A task unpickles its function by module name: this test's helpers must be importable there too.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    shared = tmp_path / "shared.txt"
    options = SlurmOptions(partition=partition, time_minutes=5, poll_seconds=1)
    submission = submit_workers(slurm_jobs.record, [(str(shared), 0), (str(shared), 1)], options, tmp_path / "slurm")
    events: list[Event] = []
    outcomes = wait_with_progress(submission.jobs, on_event=events.append, poll_seconds=1)
    assert [o.ok for o in outcomes] == [True, True]
    assert [o.value for o in outcomes] == ["item 0", "item 1"]
    assert sorted(shared.read_text().split("\n")[:-1]) == ["0 0", "1 1"]  # each item once, as its array task
    assert (tmp_path / "slurm" / submission.job_id).is_dir()  # logs under slurm/<array job id>/
    assert [e.kind for e in events].count("advance") == 2

    failing = submit_workers(slurm_jobs.fail, [7], options, tmp_path / "slurm")
    [result] = wait_with_progress(failing.jobs, poll_seconds=1)
    assert not result.ok and "task 7 fails on purpose" in (result.error or "")


def test_bench_on_slurm_completes_and_resubmits_nothing(slurm_cluster: Cluster, partition: str, tmp_path: Path) -> None:
    runs, data = tmp_path / "runs", tmp_path / "data"
    args = ["bench", "--datasets", "digits", "--losses", "clustering,triplet", "--seeds", "1", "--epochs", "1"]
    args += ["--runs-root", str(runs), "--data-root", str(data), "--device", "cpu"]
    args += ["--launcher", "slurm", "--slurm-partition", partition, "--slurm-time", "10"]
    code, stdout, stderr = invoke(*args)
    assert code == 0, stderr
    assert stdout.startswith("## digits") and "clustering" in stdout and "triplet" in stdout
    records = list((runs / "slurm").glob("*/bench-submission.json"))
    assert len(records) == 1
    tasks = json.loads(records[0].read_text())["tasks"]
    labels = {task["label"] for task in tasks}
    assert {"digits-clustering-small_cnn-seed0", "digits-triplet-small_cnn-seed0"} <= labels
    assert list(records[0].parent.glob("*_log.out"))  # submitit's logs next to the record
    for loss in ("clustering", "triplet"):
        manifest = json.loads((runs / f"digits-{loss}-small_cnn-seed0" / "manifest.json").read_text())
        assert manifest["status"] == "complete"

    # Again: everything is done, nothing is submitted, the same report.
    code, again, stderr = invoke(*args)
    assert code == 0, stderr
    assert again == stdout
    assert "skipped" in stderr and "submitted" not in stderr.lower().replace("to submit", "")
    assert len(list((runs / "slurm").glob("*/bench-submission.json"))) == 1  # no second array

    code, status, _ = invoke("status", str(runs), "--json")
    assert code == 0
    grid = next(g for g in json.loads(status) if g["kind"] == "grid")
    assert (grid["name"], grid["done"], grid["failed"], grid["pending"]) == ("digits", 2, 0, 0)


def test_bench_on_slurm_bad_partition_submits_nothing(slurm_cluster: Cluster, tmp_path: Path) -> None:
    args = ["bench", "--datasets", "digits", "--losses", "triplet", "--seeds", "1", "--runs-root", str(tmp_path)]
    before = known_jobs()
    code, stdout, stderr = invoke(*args, "--launcher", "slurm", "--slurm-partition", "debgu")
    assert code == 2 and stdout == ""
    assert "unknown SLURM partition 'debgu'" in stderr and "did you mean 'debug'" in stderr
    assert "Traceback" not in stderr
    assert not any(tmp_path.iterdir())
    assert known_jobs() == before


def test_tune_workers_on_slurm_end_with_exactly_the_budget(
    slurm_cluster: Cluster, partition: str, tmp_path: Path
) -> None:
    """`tune --launcher slurm --workers 2`: two SLURM tasks share one journal storage, 4 trials in all."""
    from dmlbench.paths import Places
    from dmlbench.tuning import TuneOptions
    from dmlbench.tuning.plan import make_plan
    from dmlbench.tuning.worker import counts, open_study

    runs, data = tmp_path / "runs", tmp_path / "data"
    args = ["--loss", "triplet", "--dataset", "digits", "--epochs", "1", "--folds", "1", "--trials", "4"]
    args += ["--runs-root", str(runs), "--data-root", str(data), "--device", "cpu", "--quiet"]
    code, stdout, stderr = invoke(
        "tune", *args, "--workers", "2", "--launcher", "slurm", "--slurm-partition", partition
    )
    assert code == 0, stderr
    assert "digits-triplet: 4 complete" in stdout or "digits-triplet:" in stdout
    options = TuneOptions.build(
        loss="triplet", dataset="digits", epochs=1, folds=1, trials=4, places=Places.of(data, runs), device="cpu"
    )
    study = open_study(make_plan(options), create=False)
    now = counts(study)
    assert (now.finished, now.running) == (4, 0)
    trials = sorted(p.name for p in (runs / "tune" / "digits-triplet").glob("trial-*"))
    assert len(trials) == 4
    assert len([p for p in (runs / "slurm").iterdir() if p.is_dir()]) == 1  # one array of two tasks

    code, status, _ = invoke("status", str(runs), "--json")
    assert code == 0
    [group] = [g for g in json.loads(status) if g["kind"] == "study"]
    assert group["name"] == "digits-triplet" and group["running"] == 0


@pytest.mark.slow
def test_preempted_task_requeues_and_resumes_from_its_checkpoint(
    slurm_cluster: Cluster, partition: str, tmp_path: Path
) -> None:
    """USR2 (what SLURM sends before a time limit or preemption): submitit requeues, the run resumes."""
    import time

    from dmlbench.benchmark import BenchOptions, make_plan
    from dmlbench.benchmark.execute import execute_quietly
    from dmlbench.datasets import prepare
    from dmlbench.launch.slurm import SlurmOptions, submit_array, wait_with_progress

    runs, data = tmp_path / "runs", tmp_path / "data"
    prepare("digits", Places.of(data))
    plan = make_plan(
        BenchOptions(
            places=Places.of(data, runs),
            datasets=("digits",),
            losses=("triplet",),
            seeds=1,
            epochs=3,
            overrides=("schedule.checkpoint_every=2",),
            device="cpu",
            baselines=False,
        )
    )
    submission = submit_array(execute_quietly, plan.tasks, SlurmOptions(partition=partition), runs / "slurm")
    run = plan.runs[0].run_dir
    deadline = time.monotonic() + 180
    while not (run / "train" / "last.pt").is_file():
        assert time.monotonic() < deadline, "no checkpoint within 3 minutes"
        time.sleep(0.2)
    job_id = str(submission.jobs[0].job_id)
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    [outcome] = wait_with_progress(submission.jobs, poll_seconds=1)
    assert outcome.ok, outcome.error
    assert outcome.value.action == "resumed"  # the requeued task found the checkpoint, not an empty folder
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    rows = [json.loads(line) for line in (run / "train" / "history.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if "step" in row] == list(range(1, manifest["last_step"] + 1))
    log = "".join(p.read_text() for p in submission.folder.glob("*_log.out"))
    assert "requeu" in log.lower()
