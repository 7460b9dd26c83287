"""`dmlbench bench` end to end: prepare -> train -> evaluate -> report, skipping finished runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dmlbench.events import Event
from dmlbench.paths import Places


def invoke(*args: str) -> tuple[int, str, str]:
    from dmlbench.cli import app

    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def actions(result: object) -> list[str]:
    """What bench did with each trained run (the baselines, computed once per dataset, are left out)."""
    return [run.action for run in result.runs if run.action != "baseline"]  # type: ignore[attr-defined]


def table_rows(markdown: str, *, baselines: bool = False) -> dict[str, dict[str, str]]:
    """The report table's rows (column title -> cell) by loss: trained losses, or (baselines=True) baselines."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    cells = ([c.strip() for c in row.strip("|").split("|")] for row in lines[2:])
    rows = (dict(zip(header, row, strict=True)) for row in cells)
    # a baseline's label may carry what sets it apart: "raw (baseline, 784-d)"
    return {row["loss"]: row for row in rows if ("(baseline" in row["loss"]) == baselines}


def test_bench_digits_end_to_end(tmp_path: Path) -> None:
    runs, data = tmp_path / "runs", tmp_path / "data"
    args = ["bench", "--datasets", "digits", "--losses", "clustering,triplet", "--seeds", "1", "--epochs", "1"]
    args += ["--runs-root", str(runs), "--data-root", str(data), "--device", "cpu", "--quiet"]
    code, stdout, stderr = invoke(*args)
    assert code == 0, stderr
    assert stdout.startswith("## digits")
    rows = table_rows(stdout)
    assert set(rows) == {"clustering", "triplet"}
    assert set(table_rows(stdout, baselines=True)) == {"raw (baseline)", "untrained (baseline)"}
    assert "**backbone** small_cnn; **embedding** 64; **batch (P×K)** 5x8" in stdout  # one value: the protocol line
    for cells in rows.values():
        assert cells["n"] == "1"
        recall_at_1 = float(cells["R@1"].rstrip("▲"))
        assert 20.0 < recall_at_1 <= 100.0  # 5 test classes: chance is about 20%
    for loss in ("clustering", "triplet"):
        run = runs / f"digits-{loss}-small_cnn-seed0"
        assert json.loads((run / "manifest.json").read_text())["status"] == "complete"
        assert (run / "eval" / "test" / "metrics.json").is_file()
        assert (run / "eval" / "test" / "embeddings.npy").is_file()  # for the report's t-SNE

    # Second time: nothing to do, same table.
    from dmlbench.benchmark import BenchOptions, run_bench

    places = Places.of(data, runs)
    events: list[Event] = []
    again = run_bench(
        BenchOptions(
            places=places, datasets=("digits",), losses=("clustering", "triplet"), seeds=1, epochs=1, device="cpu"
        ),
        on_event=events.append,
    )
    assert actions(again) == ["skipped", "skipped"]
    assert again.report == stdout

    # A trained but unevaluated run is only evaluated; an interrupted one resumes from last.pt
    # (here asked for a second epoch, as after raising --epochs).
    clustering, triplet = (runs / f"digits-{loss}-small_cnn-seed0" for loss in ("clustering", "triplet"))
    shutil.rmtree(clustering / "eval")
    evaluated = run_bench(BenchOptions(places=places, datasets=("digits",), losses=("clustering",), seeds=1, epochs=1))
    assert actions(evaluated) == ["evaluated"]
    assert (clustering / "eval" / "test" / "metrics.json").is_file()
    shutil.rmtree(triplet / "eval")
    manifest = json.loads((triplet / "manifest.json").read_text())
    (triplet / "manifest.json").write_text(json.dumps(manifest | {"status": "interrupted"}))
    resumed = run_bench(BenchOptions(places=places, datasets=("digits",), losses=("triplet",), seeds=1, epochs=2))
    assert actions(resumed) == ["resumed"]
    steps = [json.loads(line).get("step") for line in (triplet / "train" / "history.jsonl").read_text().splitlines()]
    assert max(s for s in steps if s is not None) == 2 * manifest["last_step"]
    assert json.loads((triplet / "manifest.json").read_text())["status"] == "complete"
    assert set(table_rows(resumed.report)) == {"triplet"}

    # A different config for the same run folders is refused, not silently mixed.
    code, _, stderr = invoke(*[a if a != "1" else "2" for a in args])
    assert code == 2 and "different config" in stderr


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [("--losses", "clustring", "did you mean 'clustering'"), ("--datasets", "digit", "did you mean 'digits'")],
)
def test_bench_bad_names(flag: str, value: str, message: str, tmp_path: Path) -> None:
    code, stdout, stderr = invoke("bench", flag, value, "--runs-root", str(tmp_path), "--quiet")
    assert code == 2 and stdout == ""
    assert "error:" in stderr and message in stderr
    assert not any(tmp_path.iterdir())  # validated before any work


def test_bench_unknown_format_fails_before_training(tmp_path: Path) -> None:
    code, _, stderr = invoke("bench", "--format", "markdwn", "--runs-root", str(tmp_path / "r"), "--quiet")
    assert code == 2 and "did you mean 'markdown'" in stderr
    assert not (tmp_path / "r").exists()


def test_bench_refuses_to_evaluate_a_trained_run_of_another_config(tmp_path: Path) -> None:
    from dmlbench.benchmark import BenchOptions, run_bench
    from dmlbench.config import dump_toml, load_config
    from dmlbench.datasets import get_spec
    from dmlbench.errors import ConfigError
    from dmlbench.resolve import resolve_config
    from dmlbench.rundir import Manifest, RunDir

    # Trained (complete) but never evaluated, with another learning rate than the bench asks for.
    other = resolve_config(
        load_config(None, ["optim.lr=0.5"], {"dataset": "digits", "loss.name": "triplet"}), get_spec("digits")
    )
    run = RunDir(tmp_path / "runs" / "digits-triplet-small_cnn-seed0")
    run.write_manifest(Manifest(run_id=run.run_id, status="complete"))
    run.write_config(dump_toml(other))
    with pytest.raises(ConfigError, match="different config.*optim.lr"):
        run_bench(
            BenchOptions(
                places=Places.of(tmp_path / "data", tmp_path / "runs"),
                datasets=("digits",),
                losses=("triplet",),
                seeds=1,
                device="cpu",
            )
        )
    assert not (run.root / "eval").exists()


FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian's fashion-mnist package is not installed")
def test_bench_fashion_mnist_small_cnn(tmp_path: Path) -> None:
    from dmlbench.benchmark import BenchOptions, run_bench
    from dmlbench.datasets import prepare

    data = tmp_path / "data"
    prepare("fashion-mnist", Places.of(data), source=FASHION)
    result = run_bench(
        BenchOptions(
            places=Places.of(data, tmp_path / "runs"),
            datasets=("fashion-mnist",),
            losses=("clustering", "triplet"),
            seeds=1,
            epochs=1,
            overrides=("schedule.steps=150",),
            eval_metrics=("recall", "nmi"),  # R-precision over 7,000-image classes is the slow part
            device="cpu",
        )
    )
    assert actions(result) == ["trained", "trained"]
    rows = table_rows(result.report)
    assert set(rows) == {"clustering", "triplet"}
    for cells in rows.values():
        assert float(cells["R@1"].rstrip("▲")) > 40.0  # R@1 well above the 20% of chance on 5 test classes


def test_bench_two_workers_run_each_run_once(tmp_path: Path) -> None:
    runs, data = tmp_path / "runs", tmp_path / "data"
    args = ["bench", "--datasets", "digits", "--losses", "clustering,triplet", "--seeds", "1", "--epochs", "1"]
    args += ["--runs-root", str(runs), "--data-root", str(data), "--device", "cpu", "--workers", "2"]
    code, stdout, stderr = invoke(*args)
    assert code == 0, stderr
    assert set(table_rows(stdout)) == {"clustering", "triplet"}
    assert "2 trained" in stderr
    for loss in ("clustering", "triplet"):
        run = runs / f"digits-{loss}-small_cnn-seed0"
        manifest = json.loads((run / "manifest.json").read_text())
        assert manifest["status"] == "complete"
        rows = [json.loads(line) for line in (run / "train" / "history.jsonl").read_text().splitlines()]
        steps = [row["step"] for row in rows if "step" in row]
        assert steps == list(range(1, manifest["last_step"] + 1))  # trained once, by one worker
        assert not (run / ".lock").read_text().strip()  # the claim was released

    # A run another process holds is skipped, never written twice; the report shows the others.
    from dmlbench.benchmark import BenchOptions, run_bench
    from dmlbench.errors import MissingInputError
    from dmlbench.rundir import RunDir

    clustering = RunDir(runs / "digits-clustering-small_cnn-seed0")
    shutil.rmtree(clustering.root / "eval")
    grid = BenchOptions(places=Places.of(data, runs), datasets=("digits",), seeds=1, epochs=1, workers=2)
    with clustering.claim(holder="test"):
        held = run_bench(grid.model_copy(update={"losses": ("clustering", "triplet")}))
        assert actions(held) == ["busy", "skipped"]
        assert set(table_rows(held.report)) == {"triplet"}
        with pytest.raises(MissingInputError, match=r"in use by another process \(test pid"):
            run_bench(grid.model_copy(update={"losses": ("clustering",)}))
    assert not (clustering.root / "eval").exists()


@pytest.mark.slow
def test_bench_tune_trials_gives_every_loss_the_same_budget(tmp_path: Path) -> None:
    runs, data = tmp_path / "runs", tmp_path / "data"
    args = ["bench", "--datasets", "digits", "--losses", "clustering,triplet", "--epochs", "1"]
    args += ["--tune-trials", "2", "--folds", "1", "--final-seeds", "1", "--no-baselines"]
    args += ["--runs-root", str(runs), "--data-root", str(data), "--device", "cpu", "--quiet"]
    code, stdout, stderr = invoke(*args)
    assert code == 0, stderr
    assert set(table_rows(stdout)) == {"clustering (tuned)", "triplet (tuned)"}  # the final seeds' rows
    for loss in ("clustering", "triplet"):
        study = json.loads((runs / "tune" / f"digits-{loss}" / "study.json").read_text())
        assert study["n_complete"] + study["n_pruned"] == 2
        final = runs / "tune" / f"digits-{loss}" / "final-seed0"
        assert json.loads((final / "manifest.json").read_text())["kind"] == "final"
        assert (final / "eval" / "test" / "metrics.json").is_file()


def test_bench_tune_trials_refuses_slurm(tmp_path: Path) -> None:
    code, stdout, stderr = invoke(
        "bench", "--datasets", "digits", "--tune-trials", "2", "--launcher", "slurm", "--runs-root", str(tmp_path)
    )
    assert code == 2 and stdout == "" and "hint:" in stderr and "--tune-trials" in stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_bench_workers_killed_mid_run_resume(tmp_path: Path) -> None:
    """SIGKILL the whole `bench --workers 2` mid-training: the re-run resumes from checkpoints, nothing twice."""
    import os
    import signal
    import subprocess
    import sys
    import time

    runs, data = tmp_path / "runs", tmp_path / "data"
    args = ["bench", "--datasets", "digits", "--losses", "clustering,triplet", "--seeds", "1", "--epochs", "2"]
    args += ["--set", "schedule.checkpoint_every=3", "--no-baselines"]
    args += ["--runs-root", str(runs), "--data-root", str(data), "--device", "cpu", "--quiet", "--workers", "2"]
    process = subprocess.Popen(
        [sys.executable, "-m", "dmlbench", *args], start_new_session=True, stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not list(runs.glob("*/train/last.pt")):
        assert process.poll() is None, "bench finished before it could be killed"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert list(runs.glob("*/train/last.pt")), "no checkpoint appeared"

    from dmlbench.benchmark import BenchOptions, run_bench

    again = run_bench(
        BenchOptions(
            places=Places.of(data, runs),
            datasets=("digits",),
            losses=("clustering", "triplet"),
            seeds=1,
            epochs=2,
            overrides=("schedule.checkpoint_every=3",),
            device="cpu",
            workers=2,
            baselines=False,
        )
    )
    assert "resumed" in actions(again)
    for loss in ("clustering", "triplet"):
        run = runs / f"digits-{loss}-small_cnn-seed0"
        manifest = json.loads((run / "manifest.json").read_text())
        assert manifest["status"] == "complete"
        rows = [json.loads(line) for line in (run / "train" / "history.jsonl").read_text().splitlines()]
        assert [row["step"] for row in rows if "step" in row] == list(range(1, manifest["last_step"] + 1))
