"""Bad parallel-run inputs: one-line errors with hints, nothing written, nothing submitted."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner


def invoke(*args: str) -> tuple[int, str, str]:
    from dmlbench.cli import app

    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


BENCH = ["bench", "--datasets", "digits", "--losses", "triplet", "--seeds", "1", "--device", "cpu"]


@pytest.mark.parametrize(
    ("extra", "code", "words"),
    [
        (["--workers", "0"], 2, "--workers must be at least 1"),
        (["--workers", "2", "--gpus", "3"], 4, "no GPU is visible"),
        (["--gpus", "0,0"], 2, "twice"),
        (["--launcher", "slrum"], 2, "did you mean 'slurm'"),
        (["--launcher", "slurm", "--workers", "0"], 2, "--workers must be at least 1"),
        (["--launcher", "slurm", "--slurm-additional", "constraint"], 2, "not KEY=VALUE"),
        (["--launcher", "slurm", "--slurm-time", "0"], 2, "--slurm-time must be positive"),
    ],
)
def test_bench_parallel_flags_refused(extra: list[str], code: int, words: str, tmp_path: Path) -> None:
    got, stdout, stderr = invoke(*BENCH, "--runs-root", str(tmp_path / "runs"), *extra)
    assert got == code, stderr
    assert stdout == "" and words in stderr and "hint:" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "runs").exists()


def test_bench_slurm_without_sbatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no sbatch, squeue or sinfo here
    got, stdout, stderr = invoke(*BENCH, "--runs-root", str(tmp_path / "runs"), "--launcher", "slurm")
    assert got == 4 and stdout == ""
    assert "needs sbatch, which is not on PATH" in stderr and "hint:" in stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--eval-metrics", "recall,nmii"], "nmii"),
        (["--catalog", "missing.toml"], "missing.toml"),
    ],
)
def test_bench_validates_the_whole_plan_first(extra: list[str], words: str, tmp_path: Path) -> None:
    got, stdout, stderr = invoke(*BENCH, "--runs-root", str(tmp_path / "runs"), "--data-root", str(tmp_path), *extra)
    assert got in (2, 3), stderr
    assert stdout == "" and words in stderr and "hint:" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "digits").exists()  # nothing prepared or trained
