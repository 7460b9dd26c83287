"""`dmlbench train` on the command line: bad inputs give error:/hint: and the documented exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dmlbench.cli import app
from dmlbench.rundir import RunDir

runner = CliRunner()


def _train(*args: str, data_root: Path, runs: Path) -> tuple[int, str, str]:
    result = runner.invoke(
        app, ["train", "--dataset", "digits", "--data-root", str(data_root), "--runs-root", str(runs), "--quiet", *args]
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_default_run_prepares_digits_and_prints_one_line(tmp_path: Path) -> None:
    code, stdout, stderr = _train("--steps", "3", "--no-eval", data_root=tmp_path / "empty", runs=tmp_path / "runs")
    assert code == 0, stderr
    assert (tmp_path / "empty" / "digits" / "prepared.json").is_file()
    lines = stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("digits-clustering-small_cnn-seed0: 3 steps")
    assert RunDir(tmp_path / "runs" / "digits-clustering-small_cnn-seed0").status() == "complete"


@pytest.mark.parametrize(
    ("args", "code", "message", "hint"),
    [
        (["--loss", "clusterin"], 2, "unknown loss 'clusterin'", "did you mean 'clustering'"),
        (["--set", "model.backbone=resnet5"], 2, "unknown backbone 'resnet5'", "resnet50"),
        (["--set", "optim.lrr=0.1"], 2, "unknown config key 'optim.lrr'", "did you mean 'lr'"),
        (["--set", "loss.marginnn=0.1"], 2, "has no parameter 'marginnn'", "parameters:"),
        (["--set", "sampler.classes_per_batch=6"], 2, "needs 6 classes", "classes_per_batch to at most 5"),
        # an explicit P: the dataset default alone is lowered to leave room for the held-out classes
        (
            ["--val-classes", "0.4", "--set", "sampler.classes_per_batch=5"],
            2,
            "holding out 2 validation classes",
            "at most 3",
        ),
        (["--set", "sampler.samples_per_class=1"], 2, "at least 2 images per class", "samples_per_class=2"),
        (["--dataset", "fashion-mnist"], 3, "not prepared", "dmlbench prepare fashion-mnist"),
        (["--dataset", "cub-200"], 2, "cub-200", "cub200"),
        # the core names the dotted key; the command names the option that set it
        (["--epochs", "0"], 2, "'schedule.epochs' in the --epochs option", ""),
        (["--set", "schedule.epochs=0"], 2, "'schedule.epochs' in --set schedule.epochs=0", ""),
    ],
)
def test_bad_inputs(args: list[str], code: int, message: str, hint: str, digits_root: Path, tmp_path: Path) -> None:
    exit_code, _, stderr = _train(*args, "--no-eval", data_root=digits_root, runs=tmp_path)
    flat = " ".join(stderr.split())
    assert exit_code == code, stderr
    assert "error:" in flat and message in flat
    assert "Traceback" not in stderr
    if hint:
        assert "hint:" in flat and hint in flat
    assert not any(tmp_path.iterdir()), "a rejected run must not leave files behind"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_without_cuda(digits_root: Path, tmp_path: Path) -> None:
    code, _, stderr = _train("--device", "cuda", data_root=digits_root, runs=tmp_path)
    assert code == 4 and "no CUDA device" in stderr


def test_different_run_in_the_same_dir_needs_force(digits_root: Path, tmp_path: Path) -> None:
    run_dir = str(tmp_path / "r")
    assert _train("--steps", "2", "--no-eval", "--run-dir", run_dir, data_root=digits_root, runs=tmp_path)[0] == 0
    code, _, stderr = _train(
        "--steps", "2", "--no-eval", "--run-dir", run_dir, "--loss", "triplet", data_root=digits_root, runs=tmp_path
    )
    assert code == 2 and "different run" in stderr and "--force" in stderr
    code, _, stderr = _train("--steps", "2", "--no-eval", "--run-dir", run_dir, data_root=digits_root, runs=tmp_path)
    assert code == 2 and "complete" in stderr  # same run again: nothing to do unless forced
    code, _, stderr = _train(
        "--steps",
        "2",
        "--no-eval",
        "--run-dir",
        run_dir,
        "--loss",
        "triplet",
        "--force",
        data_root=digits_root,
        runs=tmp_path,
    )
    assert code == 0, stderr
    assert RunDir(Path(run_dir)).status() == "complete"
    assert 'name = "triplet"' in (Path(run_dir) / "config.toml").read_text()


@pytest.mark.parametrize("damage", ["garbage", "foreign", "missing"])
def test_resume_refuses_bad_checkpoints(damage: str, digits_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    assert _train("--steps", "2", "--no-eval", "--run-dir", str(run_dir), data_root=digits_root, runs=tmp_path)[0] == 0
    last = run_dir / "train" / "last.pt"
    if damage == "garbage":
        last.write_bytes(b"\x00" * 100)
    elif damage == "foreign":
        torch.save({"model": {}, "epoch": 3}, last)
    else:
        last.unlink()
    before = (run_dir / "manifest.json").read_text()
    code, _, stderr = _train(
        "--steps", "4", "--no-eval", "--run-dir", str(run_dir), "--resume", data_root=digits_root, runs=tmp_path
    )
    assert code == 3, stderr
    assert "error:" in stderr and "--force" in stderr
    assert (run_dir / "manifest.json").read_text() == before, "a refused resume must not touch the run"


def test_resume_with_only_run_dir_extends_a_finished_run(digits_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    assert _train("--steps", "3", "--no-eval", "--run-dir", str(run_dir), data_root=digits_root, runs=tmp_path)[0] == 0
    code, stdout, stderr = _train(
        "--resume", "--steps", "5", "--no-eval", "--run-dir", str(run_dir), data_root=digits_root, runs=tmp_path
    )
    assert code == 0, stderr
    assert ": 5 steps" in stdout
    history = [json.loads(line) for line in (run_dir / "train" / "history.jsonl").read_text().splitlines()]
    assert [row["step"] for row in history] == [1, 2, 3, 4, 5]


def test_progress_goes_to_stderr_and_quiet_silences_it(digits_root: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["train", "--data-root", str(digits_root), "--runs-root", str(tmp_path), "--steps", "3", "--no-eval"]
    )
    assert result.exit_code == 0, result.stderr
    assert "epoch 1" in result.stderr and "loss=" in result.stderr
    assert "epoch 1" not in result.stdout


@pytest.mark.parametrize(
    "garbage",
    [b"\xff\xfe\x00 not utf-8\n", b"\x89PNG\r\n\x1a\n\x00\x00", b'{"step": 9, "ep'],
    ids=["not utf-8", "binary", "torn"],
)
def test_resume_over_a_garbled_history_keeps_its_good_rows(garbage: bytes, digits_root: Path, tmp_path: Path) -> None:
    """A history.jsonl with garbage between its rows (a copied folder, a disk error): resume, no traceback."""
    run_dir = tmp_path / "r"
    assert _train("--steps", "3", "--no-eval", "--run-dir", str(run_dir), data_root=digits_root, runs=tmp_path)[0] == 0
    history = run_dir / "train" / "history.jsonl"
    lines = history.read_bytes().splitlines(keepends=True)
    history.write_bytes(lines[0] + garbage + b"\n" + b"".join(lines[1:]) + garbage)
    code, stdout, stderr = _train(
        "--resume", "--steps", "5", "--no-eval", "--run-dir", str(run_dir), data_root=digits_root, runs=tmp_path
    )
    assert code == 0 and "Traceback" not in stderr, stderr
    assert ": 5 steps" in stdout
    rows = [json.loads(line) for line in history.read_text(encoding="utf-8").splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3, 4, 5]


def test_every_config_key_option_is_an_option_of_train() -> None:
    import inspect

    from dmlbench.cli.train import CONFIG_KEYS, command, flag_of

    parameters = inspect.signature(command).parameters
    assert set(CONFIG_KEYS) <= set(parameters)
    assert flag_of("model.embedding_dim") == "--embedding-dim" and flag_of("optim.lr") is None
