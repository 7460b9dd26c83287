"""Careless and hostile use of `train`: nothing of the user's deleted, nothing written outside the given
folders, one writer per run folder, rejected runs leave nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dmlbench.cli import app
from dmlbench.paths import Places
from dmlbench.rundir import RunDir

runner = CliRunner()


def _train(*args: str, data_root: Path) -> tuple[int, str]:
    result = runner.invoke(
        app, ["train", "--dataset", "digits", "--data-root", str(data_root), "--quiet", "--no-eval", *args]
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, " ".join(result.stderr.split())


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_force_never_removes_files_dmlbench_did_not_write(digits_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "V"
    (run_dir / "train" / "mydata").mkdir(parents=True)
    (run_dir / "train" / "mydata" / "a.txt").write_text("thesis")
    (run_dir / "eval").mkdir()
    (run_dir / "eval" / "notes.md").write_text("mine")
    code, stderr = _train("--steps", "1", "--run-dir", str(run_dir), data_root=digits_root)
    assert code == 2 and "not a dmlbench run directory" in stderr and "--force" not in stderr.split("hint:")[1]
    code, stderr = _train("--steps", "1", "--run-dir", str(run_dir), "--force", data_root=digits_root)
    assert code == 2 and "did not write" in stderr and "train/mydata" in stderr
    assert (run_dir / "train" / "mydata" / "a.txt").read_text() == "thesis"
    assert (run_dir / "eval" / "notes.md").read_text() == "mine"
    assert not (run_dir / "manifest.json").exists()


def test_force_replaces_a_run_it_wrote(digits_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "R"
    assert _train("--steps", "1", "--run-dir", str(run_dir), data_root=digits_root)[0] == 0
    code, stderr = _train("--steps", "2", "--loss", "triplet", "--run-dir", str(run_dir), data_root=digits_root)
    assert code == 2 and "different run" in stderr
    code, stderr = _train(
        "--steps", "2", "--loss", "triplet", "--run-dir", str(run_dir), "--force", data_root=digits_root
    )
    assert code == 0, stderr
    assert RunDir(run_dir).read_config().loss.name == "triplet"
    assert RunDir(run_dir).read_history().steps[-1].step == 2


@pytest.mark.parametrize("run_id", ["../../escaped_run", "/tmp/abs_run", "a/b", "..", ".hidden", "x\ny"])
def test_run_ids_are_names_not_paths(run_id: str, digits_root: Path, tmp_path: Path) -> None:
    runs = tmp_path / "deep" / "R"
    runs.mkdir(parents=True)
    before = _files(tmp_path)
    code, stderr = _train(
        "--steps", "1", "--runs-root", str(runs), "--set", f"run_id={run_id!r}", data_root=digits_root
    )
    assert code == 2 and "run_id" in stderr and "not a plain name" in stderr
    assert _files(tmp_path) == before
    assert not Path("/tmp/abs_run").exists()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("optim.lr=inf", "finite"),
        ("optim.lr=nan", "finite"),
        ("loss.margin_multiplier=inf", "finite"),
        ("optim.weight_decay=-1", "optim.weight_decay"),
    ],
)
def test_non_finite_and_out_of_range_values_leave_nothing(
    setting: str, message: str, digits_root: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "R"
    code, stderr = _train("--steps", "1", "--run-dir", str(run_dir), "--set", setting, data_root=digits_root)
    assert code == 2 and message in stderr, stderr
    assert "--set" in stderr or setting.startswith("loss."), "schema values name the --set that gave them"
    assert not run_dir.exists()


def test_a_value_given_by_flag_is_blamed_on_the_flag(digits_root: Path, tmp_path: Path) -> None:
    code, stderr = _train("--epochs", "-3", "--run-dir", str(tmp_path / "R"), data_root=digits_root)
    assert code == 2 and "--epochs" in stderr and "defaults" not in stderr


@pytest.mark.parametrize("kind", ["file", "readonly"])
def test_a_run_dir_that_cannot_be_written_is_one_line(kind: str, digits_root: Path, tmp_path: Path) -> None:
    target = tmp_path / "R"
    if kind == "file":
        target.write_text("not a folder")
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        target.mkdir()
        target.chmod(0o500)
    code, stderr = _train("--steps", "1", "--run-dir", str(target), data_root=digits_root)
    assert code in (2, 4) and "error:" in stderr and "hint:" in stderr and "Traceback" not in stderr


def _spawn(run_dir: Path, data_root: Path, loss: str, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "dmlbench", "train", "--dataset", "digits", "--loss", loss, "--quiet", "--no-eval"]
    command += ["--data-root", str(data_root), "--run-dir", str(run_dir), *extra]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_writers_started_together_one_wins(digits_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "R"
    first = _spawn(run_dir, digits_root, "clustering", "--steps", "30")
    second = _spawn(run_dir, digits_root, "lifted", "--steps", "30")
    results = {
        loss: (p.wait(timeout=300), p.stderr.read() if p.stderr else "")
        for loss, p in (("clustering", first), ("lifted", second))
    }
    winners = [loss for loss, (code, _) in results.items() if code == 0]
    assert len(winners) == 1, results
    loser = "lifted" if winners == ["clustering"] else "clustering"
    code, stderr = results[loser]
    flat = " ".join(stderr.split())
    assert code == 2 and "error:" in flat and "Traceback" not in flat
    # Either it met the lock ("in use by ... pid") or the finished run of the other loss.
    assert "in use by" in flat or "different run" in flat
    run = RunDir(run_dir)
    assert run.read_manifest().status == "complete" and run.read_config().loss.name == winners[0]
    assert {row.step for row in run.read_history().steps} == set(range(1, 31))


def test_a_lock_left_by_a_killed_process_is_taken_over(digits_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "R"
    victim = _spawn(run_dir, digits_root, "triplet", "--steps", "100000", "--set", "schedule.checkpoint_every=5")
    run = RunDir(run_dir)
    deadline = time.monotonic() + 120
    while not (run.holder() and run.last_checkpoint.is_file()):
        assert victim.poll() is None and time.monotonic() < deadline, "training did not start"
        time.sleep(0.2)
    assert f"pid {victim.pid}" in (run.holder() or "")
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    assert run.holder() is None  # the kernel released the dead writer's lock
    code, stderr = _train(
        "--loss", "triplet", "--steps", "8", "--run-dir", str(run_dir), "--resume", data_root=digits_root
    )
    assert code == 0, stderr
    assert run.read_manifest().status == "complete"


def test_margin_decay_follows_the_step_and_survives_resume(digits_root: Path, tmp_path: Path) -> None:
    from dmlbench.config import load_config
    from dmlbench.losses import LOSSES
    from dmlbench.losses.base import StepScheduled
    from dmlbench.training.checkpoint import Position

    # The [loss] table's schedule keys reach the clustering loss, which owns γ's schedule.
    cfg = load_config(None, ["loss.margin_decay=0.5", "loss.margin_decay_every=2", "loss.margin_multiplier=8.0"])
    loss = LOSSES.build(cfg.loss.name, cfg.loss.kwargs())
    assert isinstance(loss, StepScheduled)
    for step, expected in [(0, 8.0), (1, 8.0), (2, 4.0), (5, 2.0), (2, 4.0)]:  # a resumed run jumps back
        loss.on_step(Position(epoch=0, batch=step, step=step))
        assert loss.margin_multiplier == expected
    per_epoch = load_config(None, ["loss.margin_decay=0.94", "loss.margin_multiplier=1.0"])
    loss = LOSSES.build(per_epoch.loss.name, per_epoch.loss.kwargs())
    loss.on_step(Position(epoch=3, batch=0, step=99))
    assert loss.margin_multiplier == pytest.approx(0.94**3)
    still = LOSSES.build("clustering", load_config(None, ["loss.margin_multiplier=3.0"]).loss.kwargs())
    still.on_step(Position(epoch=3, batch=0, step=99))
    assert still.margin_multiplier == 3.0  # no margin_decay: γ stays
    assert not isinstance(LOSSES.build("triplet", {}), StepScheduled)
    code, stderr = _train(
        "--loss", "triplet", "--set", "loss.margin_decay=0.9", "--run-dir", str(tmp_path / "t"), data_root=digits_root
    )
    assert code == 2 and "has no parameter 'margin_decay'" in stderr


def test_the_c_of_m_sampler_trains_exact_batches(digits_root: Path, tmp_path: Path) -> None:
    from dmlbench.config import load_config
    from dmlbench.training import train

    sets = ['sampler.kind="c-of-m"', "sampler.batch_size=12", "sampler.classes_per_batch=4", "schedule.steps=3"]
    summary = train(
        load_config(None, sets, {"dataset": "digits", "loss.name": "triplet"}),
        tmp_path / "r",
        places=Places.of(digits_root),
        evaluate_at_end=False,
        device="cpu",
    )
    assert summary.steps == 3
    # 12 images from 4 classes: 3 each; a batch that leaves a class a single image is refused for npairs
    code, stderr = _train(
        "--loss",
        "npairs",
        "--set",
        'sampler.kind="c-of-m"',
        "--set",
        "sampler.batch_size=9",
        "--set",
        "sampler.classes_per_batch=5",
        "--run-dir",
        str(tmp_path / "n"),
        data_root=digits_root,
    )
    assert code == 2 and "needs at least 2 images per class" in stderr and not (tmp_path / "n").exists()
