"""The bench plan: every dataset x loss x seed checked and resolved before the first minute of work.

Datasets (with `--catalog`), losses, metrics, the report format and every config value are validated
here, so a typo fails at once and writes nothing. The plan is plain picklable data: local workers and
SLURM tasks receive its items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from dmlbench.errors import UnknownNameError, UsageError

if TYPE_CHECKING:
    from dmlbench.benchmark.options import BenchOptions
    from dmlbench.config import TrainConfig
    from dmlbench.paths import Places

BASELINES = ("untrained", "raw")


def default_dataset() -> str:
    """The dataset `dmlbench train` uses by default: bench follows it (one place: TrainConfig)."""
    from dmlbench.config import TrainConfig

    default = TrainConfig.model_fields["dataset"].default
    assert isinstance(default, str)
    return default


@dataclass(frozen=True)
class RunTask:
    """One training run of the grid: what a worker (local or SLURM) needs to train and evaluate it."""

    dataset: str
    loss: str
    seed: int
    cfg: TrainConfig  # as given (train() resolves it again: the stored config.toml is the resolved one)
    resolved: TrainConfig
    run_dir: Path
    places: Places
    device: str = "auto"
    eval_metrics: tuple[str, ...] | None = None
    kind: Literal["run"] = "run"

    @property
    def label(self) -> str:
        return self.run_dir.name


@dataclass(frozen=True)
class BaselineTask:
    """One baseline (untrained network or raw pixels) of a dataset and backbone, computed once per bench."""

    dataset: str
    baseline: str
    backbone: str
    places: Places
    device: str = "auto"
    kind: Literal["baseline"] = "baseline"

    @property
    def label(self) -> str:
        return f"{self.dataset}-{self.baseline}-{self.backbone}"


Task = RunTask | BaselineTask


@dataclass
class BenchPlan:
    """The validated grid: its runs, the baselines to compute, the datasets to prepare first."""

    runs: list[RunTask] = field(default_factory=list)
    baselines: list[BaselineTask] = field(default_factory=list)

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(run.dataset for run in self.runs))

    @property
    def tasks(self) -> list[Task]:
        return [*self.runs, *self.baselines]


def names(kind: str, given: Sequence[str], known: Sequence[str]) -> list[str]:
    from dmlbench.registry import did_you_mean

    chosen = list(dict.fromkeys(n.strip() for n in given if n.strip()))
    if not chosen:
        raise UsageError(f"no {kind} given", hint=f"known: {', '.join(known)}")
    for name in chosen:
        if name not in known:
            raise UnknownNameError(
                f"unknown {kind} {name!r}", hint=f"{did_you_mean(name, list(known))}known: {', '.join(known)}"
            )
    return chosen


def make_plan(options: BenchOptions) -> BenchPlan:
    """Check every input of the grid and resolve each run's config; nothing is written."""
    from dmlbench.config import load_config
    from dmlbench.datasets import get_spec, load_catalog
    from dmlbench.evaluation import EvalOptions
    from dmlbench.evaluation.core import check_options
    from dmlbench.losses import LOSSES
    from dmlbench.paths import child_path
    from dmlbench.reporting import RENDERERS
    from dmlbench.resolve import resolve_config

    places = options.places
    RENDERERS.get(options.fmt)  # a typo in --format fails before hours of training
    known_datasets = sorted(load_catalog(places))
    dataset_names = names("dataset", options.datasets or [default_dataset()], known_datasets)
    given = [n.strip() for n in options.losses if n.strip()]
    for name in given:
        LOSSES.get(name)  # any name of the scheme table (pml:, a file, a module); did-you-mean on a typo
    loss_names = names("loss", given, given or LOSSES.names())
    seeds = options.seed_values
    flags = {"schedule.epochs": options.epochs} if options.epochs is not None else {}
    metrics = options.eval_metrics

    plan = BenchPlan()
    backbones: dict[tuple[str, str], None] = {}
    for dataset in dataset_names:
        spec = get_spec(dataset, places)
        if metrics is not None:
            # an unknown metric fails now, not after training everything
            check_options(EvalOptions(recall_k=tuple(spec.recall_k), metrics=metrics))
        for loss in loss_names:
            for seed in seeds:
                cfg = load_config(
                    options.config_file,
                    options.overrides,
                    flags={"dataset": dataset, "loss.name": loss, "seed": seed, **flags},
                )
                resolved = resolve_config(cfg, spec)
                assert resolved.run_id is not None and resolved.model.backbone is not None
                run_dir = child_path(places.runs_root, resolved.run_id, "run_id")
                if any(task.run_dir == run_dir for task in plan.runs):
                    raise UsageError(
                        f"two runs of the grid share the run folder {run_dir.name}",
                        hint="leave run_id out of --set / --config: bench names each run after its dataset, loss, seed",
                    )
                plan.runs.append(RunTask(dataset, loss, seed, cfg, resolved, run_dir, places, options.device, metrics))
                backbones[(dataset, resolved.model.backbone)] = None
    if options.baselines:
        for dataset, backbone in backbones:
            for baseline in BASELINES:
                plan.baselines.append(BaselineTask(dataset, baseline, backbone, places, options.device))
    return plan
