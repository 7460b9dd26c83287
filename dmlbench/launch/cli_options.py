"""The `--workers`, `--gpus`, `--launcher`, `--wait` and `--slurm-*` flags: one option group for `bench` and `tune`.

A command decorated with `launch_options()` declares one keyword-only parameter `launch: LaunchChoice`; the
decorator shows typer the flags in its place and hands the command one checked `LaunchChoice` (the local
workers, or the `SlurmOptions` of a `--launcher slurm` submission), so both commands spell, document and
check the flags the same way. Only the CLI imports this module (it needs typer); the environment is read
by the caller and passed in.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import typer

from dmlbench.launch.local import check_workers, parse_gpus
from dmlbench.launch.slurm import SlurmOptions, parse_additional
from dmlbench.utils.signature import flag_group

__all__ = ["LaunchChoice", "check_workers", "launch_options", "parse_gpus", "resolve_gpus"]

R = TypeVar("R")

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


@dataclass(frozen=True)
class LaunchChoice:
    """What the group's flags ask for: `workers` here (on `gpus`, resolved by the command) or a SLURM array."""

    workers: int
    gpus: str | None
    slurm: SlurmOptions | None  # None: --launcher local

    @property
    def launcher(self) -> LauncherName:
        return "local" if self.slurm is None else "slurm"


# The group's typer parameters, in the order --help lists them: (parameter, annotation, default).
_LOCAL_FLAGS: tuple[tuple[str, Any, Any], ...] = (
    ("workers", Workers, 1),
    ("gpus", Gpus, None),
    ("launcher", Launcher, "local"),
)
_SLURM_FLAGS: tuple[tuple[str, Any, Any], ...] = (
    ("wait", Wait, True),
    ("slurm_partition", Partition, None),
    ("slurm_time", TimeMinutes, 60),
    ("slurm_gpus_per_task", GpusPerTask, None),
    ("slurm_cpus_per_task", CpusPerTask, None),
    ("slurm_mem", Mem, None),
    ("slurm_account", Account, None),
    ("slurm_qos", Qos, None),
    ("slurm_setup", Setup, None),
    ("slurm_additional", Additional, None),
)
_PARALLELISM_FLAG = ("slurm_array_parallelism", ArrayParallelism, 256)


def _choice(flags: dict[str, Any]) -> LaunchChoice:
    """The flags' values checked (launcher name, worker count, every --slurm-* value) as one LaunchChoice."""
    launcher = check_launcher(flags["launcher"])
    workers = check_workers(flags["workers"])
    slurm = None
    if launcher == "slurm":
        slurm = SlurmOptions(
            partition=flags["slurm_partition"],
            time_minutes=flags["slurm_time"],
            gpus_per_task=flags["slurm_gpus_per_task"],
            cpus_per_task=flags["slurm_cpus_per_task"],
            mem=flags["slurm_mem"],
            account=flags["slurm_account"],
            qos=flags["slurm_qos"],
            setup=tuple(flags["slurm_setup"] or ()),
            additional=parse_additional(flags["slurm_additional"] or ()),
            # Without the flag, each worker is one task and they all run at once (tune's workers share a study).
            array_parallelism=flags.get("slurm_array_parallelism", workers),
            wait=flags["wait"],
        )
    return LaunchChoice(workers=workers, gpus=flags["gpus"], slurm=slurm)


def launch_options(*, array_parallelism: bool = True) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Give a command the group's flags in place of its `launch: LaunchChoice` parameter (utils/signature.py).

    `array_parallelism=False` leaves out --slurm-array-parallelism (tune: as many tasks at once as workers).
    """
    declared = [*_LOCAL_FLAGS, *_SLURM_FLAGS, *([_PARALLELISM_FLAG] if array_parallelism else [])]
    flags = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=hint)
        for name, hint, default in declared
    ]
    return flag_group("launch", flags, _choice)
