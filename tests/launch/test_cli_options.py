"""The parallel-run option group: one declaration of the flags, one checked LaunchChoice for the command."""

from __future__ import annotations

from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from dmlbench.errors import DmlbenchError
from dmlbench.launch import cli_options as opt
from dmlbench.launch.slurm import SlurmOptions


def _app(*, array_parallelism: bool) -> tuple[typer.Typer, list[opt.LaunchChoice]]:
    """A one-command app whose command records the LaunchChoice it was handed."""
    seen: list[opt.LaunchChoice] = []
    app = typer.Typer()

    @app.command()
    @opt.launch_options(array_parallelism=array_parallelism)
    def command(
        name: Annotated[str, typer.Option(help="Something of the command's own.")] = "x",
        *,
        launch: opt.LaunchChoice,
    ) -> None:
        assert name == "x"
        seen.append(launch)

    return app, seen


def test_local_flags_hand_workers_and_unresolved_gpus() -> None:
    app, seen = _app(array_parallelism=True)
    result = CliRunner().invoke(app, ["--workers", "3", "--gpus", "0,1"])
    assert result.exit_code == 0, result.output
    assert seen == [opt.LaunchChoice(workers=3, gpus="0,1", slurm=None)]
    assert seen[0].launcher == "local"


def test_slurm_flags_become_one_slurm_options() -> None:
    app, seen = _app(array_parallelism=True)
    args = ["--launcher", "slurm", "--no-wait", "--slurm-partition", "gpu", "--slurm-time", "5"]
    args += ["--slurm-setup", "module load cuda", "--slurm-additional", "constraint=a100"]
    args += ["--slurm-array-parallelism", "7", "--slurm-mem", "16G", "--slurm-gpus-per-task", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    [choice] = seen
    assert choice.launcher == "slurm"
    assert choice.slurm == SlurmOptions(
        partition="gpu",
        time_minutes=5,
        gpus_per_task=1,
        mem="16G",
        setup=("module load cuda",),
        additional=(("constraint", "a100"),),
        array_parallelism=7,
        wait=False,
    )


def test_without_the_parallelism_flag_every_worker_runs_at_once() -> None:
    app, seen = _app(array_parallelism=False)
    result = CliRunner().invoke(app, ["--launcher", "slurm", "--workers", "4"])
    assert result.exit_code == 0, result.output
    assert seen[0].slurm is not None and seen[0].slurm.array_parallelism == 4
    refused = CliRunner().invoke(app, ["--slurm-array-parallelism", "2"])
    assert refused.exit_code == 2 and not seen[1:]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--launcher", "slrum"], "did you mean 'slurm'"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--launcher", "slurm", "--slurm-time", "0"], "--slurm-time must be positive"),
    ],
)
def test_bad_flags_are_refused_before_the_command_runs(args: list[str], words: str) -> None:
    app, seen = _app(array_parallelism=True)
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and not seen
    error = result.exception
    assert isinstance(error, DmlbenchError)
    assert words in f"{error.message} {error.hint}"


@pytest.mark.parametrize(("command", "parallelism"), [("bench", True), ("tune", False)])
def test_bench_and_tune_show_the_group_in_its_panels(command: str, parallelism: bool) -> None:
    from dmlbench.cli import app

    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = result.stdout
    # The panels' boxes: the description above may name the flags too.
    parallel, slurm = text.split(opt.PANEL)[1].split(opt.SLURM_PANEL)
    for flag in ("--workers", "--gpus", "--launcher"):
        assert f"│ {flag} " in parallel
    flags = ["--wait", "--slurm-partition", "--slurm-time", "--slurm-gpus-per-task", "--slurm-cpus-per-task"]
    flags += ["--slurm-mem", "--slurm-account", "--slurm-qos", "--slurm-setup", "--slurm-additional"]
    for flag in flags:
        assert f"│ {flag} " in slurm
    assert ("--slurm-array-parallelism" in slurm) == parallelism
    assert "--launch " not in text


def test_a_command_without_a_launch_parameter_is_a_programming_error() -> None:
    def command(name: str = "x") -> None:
        del name

    with pytest.raises(TypeError, match="no parameter .launch. for its group of flags"):
        opt.launch_options()(command)
