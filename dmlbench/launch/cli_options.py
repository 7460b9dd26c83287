"""The typer options of `--workers`, `--gpus`, `--launcher` and `--slurm-*`, shared by `bench` and `tune`.

A command declares them as parameters with these annotations and turns them into core arguments with
`resolve_gpus` and `slurm_options`, so both commands spell, document and check them the same way.
Only the CLI imports this module (it needs typer); the environment is read by the caller and passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import typer

from dmlbench.launch.local import check_workers, parse_gpus

__all__ = ["check_workers", "parse_gpus"]
from dmlbench.launch.slurm import SlurmOptions, parse_additional

PANEL = "Parallel runs"
SLURM_PANEL = "SLURM (--launcher slurm)"

LauncherName = Literal["local", "slurm"]

Workers = Annotated[
    int,
    typer.Option(
        help="Local worker processes (tune --launcher slurm: SLURM jobs sharing the study).", rich_help_panel=PANEL
    ),
]
Gpus = Annotated[
    str | None,
    typer.Option(help="GPUs for local workers, e.g. 0,1 \\[default: every visible GPU].", rich_help_panel=PANEL),
]
Launcher = Annotated[
    str,
    typer.Option(help="local (this machine) or slurm (submitit job array).", rich_help_panel=PANEL),
]
Wait = Annotated[
    bool,
    typer.Option("--wait/--no-wait", help="Wait for the SLURM tasks, then report.", rich_help_panel=SLURM_PANEL),
]
Partition = Annotated[str | None, typer.Option("--slurm-partition", help="Partition.", rich_help_panel=SLURM_PANEL)]
TimeMinutes = Annotated[
    int, typer.Option("--slurm-time", help="Time limit per task, minutes.", rich_help_panel=SLURM_PANEL)
]
GpusPerTask = Annotated[
    int | None, typer.Option("--slurm-gpus-per-task", help="GPUs per task.", rich_help_panel=SLURM_PANEL)
]
CpusPerTask = Annotated[
    int | None, typer.Option("--slurm-cpus-per-task", help="CPUs per task.", rich_help_panel=SLURM_PANEL)
]
Mem = Annotated[str | None, typer.Option("--slurm-mem", help="Memory per node, e.g. 16G.", rich_help_panel=SLURM_PANEL)]
Account = Annotated[str | None, typer.Option("--slurm-account", help="Account.", rich_help_panel=SLURM_PANEL)]
Qos = Annotated[str | None, typer.Option("--slurm-qos", help="Quality of service.", rich_help_panel=SLURM_PANEL)]
Setup = Annotated[
    list[str] | None,
    typer.Option("--slurm-setup", help="Shell line run before each task (repeatable).", rich_help_panel=SLURM_PANEL),
]
Additional = Annotated[
    list[str] | None,
    typer.Option(
        "--slurm-additional", help="More sbatch options as KEY=VALUE (repeatable).", rich_help_panel=SLURM_PANEL
    ),
]
ArrayParallelism = Annotated[
    int,
    typer.Option("--slurm-array-parallelism", help="Tasks of the array running at once.", rich_help_panel=SLURM_PANEL),
]


def check_launcher(launcher: str) -> LauncherName:
    from dmlbench.errors import UnknownNameError
    from dmlbench.registry import did_you_mean

    if launcher not in ("local", "slurm"):
        raise UnknownNameError(
            f"unknown launcher {launcher!r}",
            hint=f"{did_you_mean(launcher, ['local', 'slurm'])}launchers: local, slurm",
        )
    return "slurm" if launcher == "slurm" else "local"


def resolve_gpus(spec: str | None, device: str, workers: int) -> list[int] | None:
    """`--gpus` checked against the GPUs torch sees (none when --device cpu); --workers checked too."""
    check_workers(workers)
    available = 0
    if device != "cpu" and (spec is not None or workers > 1):
        import torch

        available = torch.cuda.device_count()
    return parse_gpus(spec, available)


def slurm_options(
    *,
    partition: str | None,
    time_minutes: int,
    gpus_per_task: int | None,
    cpus_per_task: int | None,
    mem: str | None,
    account: str | None,
    qos: str | None,
    setup: Sequence[str] | None,
    additional: Sequence[str] | None,
    array_parallelism: int,
    wait: bool,
) -> SlurmOptions:
    """The `--slurm-*` flags as SlurmOptions (bad values are one-line usage errors)."""
    return SlurmOptions(
        partition=partition,
        time_minutes=time_minutes,
        gpus_per_task=gpus_per_task,
        cpus_per_task=cpus_per_task,
        mem=mem,
        account=account,
        qos=qos,
        setup=tuple(setup or ()),
        additional=parse_additional(additional or ()),
        array_parallelism=array_parallelism,
        wait=wait,
    )
