"""Core of `dmlbench bench`: prepare -> train -> evaluate every dataset x loss x seed, then report.

Finished runs are skipped (manifest complete and test metrics present), interrupted ones resumed, so
re-running the same command after a crash only does the missing work. The run folders are the same
as `dmlbench train` writes, so `dmlbench report` reads them too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from dmlbench.errors import (
    ConfigError,
    DeviceError,
    DmlbenchError,
    InterruptedRunError,
    MissingInputError,
    UnknownNameError,
    UsageError,
)
from dmlbench.events import Event, EventHandler, emit

if TYPE_CHECKING:
    from dmlbench.config import TrainConfig

log = logging.getLogger(__name__)

DEFAULT_DATASETS = ("digits",)
DEFAULT_LOSSES = ("clustering", "triplet", "lifted", "npairs")
DEFAULT_SEEDS = 3

Action = Literal["skipped", "trained", "resumed", "evaluated", "failed"]


@dataclass(frozen=True)
class BenchRun:
    """What happened to one dataset x loss x seed combination."""

    dataset: str
    loss: str
    seed: int
    run_dir: Path
    action: Action
    seconds: float
    error: str | None = None


@dataclass
class BenchResult:
    """Every combination's outcome plus the markdown (or other format) report of those runs."""

    runs: list[BenchRun] = field(default_factory=list)
    report: str = ""

    @property
    def failed(self) -> list[BenchRun]:
        """Combinations whose training or evaluation failed (they appear in the report's notes)."""
        return [run for run in self.runs if run.action == "failed"]


def _seed_list(seeds: int | Sequence[int]) -> list[int]:
    if isinstance(seeds, int):
        if seeds < 1:
            raise UsageError(f"--seeds must be at least 1, not {seeds}", hint="e.g. --seeds 3 runs seeds 0, 1, 2")
        return list(range(seeds))
    chosen = sorted(set(seeds))
    if not chosen or min(chosen) < 0:
        raise UsageError("seeds must be non-negative integers", hint="e.g. --seeds 3 runs seeds 0, 1, 2")
    return chosen


def _names(kind: str, given: Sequence[str], known: Sequence[str]) -> list[str]:
    from dmlbench.registry import did_you_mean

    names = list(dict.fromkeys(n.strip() for n in given if n.strip()))
    if not names:
        raise UsageError(f"no {kind} given", hint=f"known: {', '.join(known)}")
    for name in names:
        if name not in known:
            raise UnknownNameError(
                f"unknown {kind} {name!r}", hint=f"{did_you_mean(name, list(known))}known: {', '.join(known)}"
            )
    return names


def _is_finished(run_dir: Path) -> bool:
    from dmlbench.rundir import RunDir

    run = RunDir(run_dir)
    try:
        return run.exists() and run.read_manifest().status == "complete" and run.metrics_path("test").is_file()
    except DmlbenchError:
        return False


def _require_same_config(run_dir: Path, resolved: TrainConfig) -> None:
    """A trained run folder is reused only for the very config asked for."""
    from dmlbench.config import diff_keys
    from dmlbench.rundir import RunDir

    changed = diff_keys(RunDir(run_dir).read_config(), resolved)
    if changed:
        raise ConfigError(  # a ConfigError so that run_bench stops instead of recording a failed combination
            f"{run_dir} holds a finished run with a different config ({', '.join(changed[:4])})",
            hint="use another --runs-root, or delete that run folder to re-run it",
        )


def run_bench(
    *,
    datasets: Sequence[str] = DEFAULT_DATASETS,
    losses: Sequence[str] = DEFAULT_LOSSES,
    seeds: int | Sequence[int] = DEFAULT_SEEDS,
    runs_root: Path,
    data_root: Path,
    config_file: Path | None = None,
    overrides: Sequence[str] = (),
    epochs: int | None = None,
    device: str = "auto",
    eval_metrics: Sequence[str] | None = None,
    fmt: str = "markdown",
    on_event: EventHandler | None = None,
) -> BenchResult:
    """Train and evaluate every dataset x loss x seed under `runs_root`, then render the report of those runs.

    `config_file` and `overrides` (`--set k=v`) apply to every combination; dataset, loss and seed are
    set per combination (and `epochs` overrides schedule.epochs). `eval_metrics` restricts the test-split
    metrics (e.g. `["recall", "nmi"]`: R-precision and MAP@R cost most on datasets with large classes).
    A combination whose training fails is recorded and the grid goes on; configuration and device errors
    stop it at once.
    """
    from dmlbench.config import load_config
    from dmlbench.datasets import get_spec, load_catalog, prepare
    from dmlbench.evaluation import evaluate
    from dmlbench.losses import LOSSES
    from dmlbench.reporting import RENDERERS, report
    from dmlbench.resolve import resolve_config
    from dmlbench.rundir import RunDir
    from dmlbench.training import train

    RENDERERS.get(fmt)  # a typo in --format fails before hours of training
    dataset_names = _names("dataset", datasets, sorted(load_catalog()))
    loss_names = _names("loss", losses, LOSSES.names())
    seed_list = _seed_list(seeds)
    flags = {"schedule.epochs": epochs} if epochs is not None else {}

    plan = []  # validate every config before the first minute of training
    for dataset in dataset_names:
        spec = get_spec(dataset)
        for loss in loss_names:
            for seed in seed_list:
                cfg = load_config(
                    config_file, overrides, flags={"dataset": dataset, "loss.name": loss, "seed": seed, **flags}
                )
                resolved = resolve_config(cfg, spec)
                assert resolved.run_id is not None
                plan.append((dataset, loss, seed, cfg, resolved, runs_root / resolved.run_id))

    result = BenchResult()
    total = len(plan)
    emit(on_event, Event("log", "bench", message=f"bench: {total} runs under {runs_root}"))
    prepared: set[str] = set()
    for number, (dataset, loss, seed, cfg, resolved, run_dir) in enumerate(plan, start=1):
        label = f"[{number}/{total}] {run_dir.name}"
        started = time.perf_counter()
        run = RunDir(run_dir)
        if _is_finished(run_dir):
            _require_same_config(run_dir, resolved)
            emit(on_event, Event("log", "bench", message=f"{label}: finished before, skipped"))
            result.runs.append(BenchRun(dataset, loss, seed, run_dir, "skipped", 0.0))
            continue
        if dataset not in prepared:
            prepare(dataset, data_root=data_root, on_event=on_event)
            prepared.add(dataset)
        action: Action
        try:
            manifest = run.read_manifest() if run.exists() else None
            if manifest is not None and manifest.status == "complete":
                _require_same_config(run_dir, resolved)  # evaluating it would report another config's run
                action = "evaluated"
                emit(on_event, Event("log", "bench", message=f"{label}: trained, evaluating"))
            else:
                resume = manifest is not None and run.last_checkpoint.is_file()
                action = "resumed" if resume else "trained"
                emit(on_event, Event("log", "bench", message=f"{label}: {'resuming' if resume else 'training'}"))
                train(
                    cfg,
                    run_dir,
                    data_root=data_root,
                    resume=resume,
                    force=manifest is not None and not resume,
                    device=device,
                    on_event=on_event,
                    evaluate_at_end=False,
                )
            # Saved embeddings feed the report's t-SNE maps.
            evaluate(
                run_dir,
                data_root=data_root,
                device=device,
                metrics=eval_metrics,
                save_embeddings=True,
                on_event=on_event,
            )
        except (InterruptedRunError, ConfigError, UnknownNameError, DeviceError):
            raise
        except DmlbenchError as error:
            emit(on_event, Event("log", "bench", message=f"{label}: failed: {error.message}"))
            result.runs.append(
                BenchRun(dataset, loss, seed, run_dir, "failed", time.perf_counter() - started, error.message)
            )
            continue
        result.runs.append(BenchRun(dataset, loss, seed, run_dir, action, time.perf_counter() - started))

    written = [run.run_dir for run in result.runs if (run.run_dir / "manifest.json").is_file()]
    if not written:
        failures = "; ".join(f"{run.run_dir.name}: {run.error}" for run in result.failed)
        raise MissingInputError("every bench run failed before writing its run folder", hint=failures)
    result.report = report(written, fmt=fmt, on_event=on_event)
    return result
