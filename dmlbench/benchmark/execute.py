"""One task of the grid, wherever it runs (this process, a local worker, a SLURM task).

The run folder is claimed by `train()` / `evaluate()` themselves, so two workers can never write one run:
the second finds it held and skips it. A finished run is skipped, a trained one only evaluated, an
interrupted one resumed from its checkpoint; so re-running after any kill does only the missing work.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from dmlbench.errors import ConfigError, DeviceError, DmlbenchError, InterruptedRunError, UnknownNameError
from dmlbench.events import Event, EventHandler, emit

if TYPE_CHECKING:
    from dmlbench.benchmark.plan import BaselineTask, RunTask, Task
    from dmlbench.config import TrainConfig

log = logging.getLogger(__name__)

Action = Literal["skipped", "trained", "resumed", "evaluated", "failed", "busy", "baseline"]
# Errors that stop the whole grid: every other run would fail the same way (or the user pressed Ctrl-C).
STOPPING = (InterruptedRunError, ConfigError, UnknownNameError, DeviceError)


@dataclass(frozen=True)
class BenchRun:
    """What happened to one dataset x loss x seed combination (or one baseline, `loss` = its kind)."""

    dataset: str
    loss: str
    seed: int
    run_dir: Path
    action: Action
    seconds: float
    error: str | None = None


def is_finished(run_dir: Path) -> bool:
    """A run is finished when its manifest says complete and its test metrics exist."""
    from dmlbench.rundir import RunDir

    run = RunDir(run_dir)
    try:
        return run.exists() and run.read_manifest().status == "complete" and run.read_metrics("test") is not None
    except DmlbenchError:
        return False


def require_same_config(run_dir: Path, resolved: TrainConfig) -> None:
    """A trained run folder is reused only for the very config asked for."""
    from dmlbench.config import diff_keys
    from dmlbench.rundir import RunDir

    changed = diff_keys(RunDir(run_dir).read_config(), resolved)
    if changed:
        raise ConfigError(  # a ConfigError so that the grid stops instead of recording a failed combination
            f"{run_dir} holds a finished run with a different config ({', '.join(changed[:4])})",
            hint="use another --runs-root, or delete that run folder to re-run it",
        )


def _busy(task: RunTask, started: float, holder: str) -> BenchRun:
    log.info("%s is held by %s: skipped", task.run_dir, holder)
    return BenchRun(task.dataset, task.loss, task.seed, task.run_dir, "busy", time.perf_counter() - started, holder)


def run_task(task: RunTask, on_event: EventHandler | None = None, prefix: str = "") -> BenchRun:
    """Train (or resume) and evaluate one run; a run another process holds is skipped, not waited for."""
    from dmlbench.evaluation import EvalOptions, evaluate
    from dmlbench.rundir import RunDir
    from dmlbench.training import train

    label = f"{prefix}{task.label}"
    started = time.perf_counter()
    run = RunDir(task.run_dir)
    holder = run.holder()
    if holder is not None:
        emit(on_event, Event("log", "bench", message=f"{label}: in use by {holder}, skipped"))
        return _busy(task, started, holder)
    if is_finished(task.run_dir):
        require_same_config(task.run_dir, task.resolved)
        emit(on_event, Event("log", "bench", message=f"{label}: finished before, skipped"))
        return BenchRun(task.dataset, task.loss, task.seed, task.run_dir, "skipped", 0.0)
    action: Action
    try:
        manifest = run.read_manifest() if run.exists() else None
        if manifest is not None and manifest.status == "complete":
            require_same_config(task.run_dir, task.resolved)  # evaluating it would report another config's run
            action = "evaluated"
            emit(on_event, Event("log", "bench", message=f"{label}: trained, evaluating"))
        else:
            resume = manifest is not None and run.last_checkpoint.is_file()
            action = "resumed" if resume else "trained"
            emit(on_event, Event("log", "bench", message=f"{label}: {'resuming' if resume else 'training'}"))
            train(
                task.cfg,
                task.run_dir,
                places=task.places,
                resume=resume,
                force=manifest is not None and not resume,
                device=task.device,
                on_event=on_event,
                evaluate_at_end=False,
            )
        # Saved embeddings feed the report's t-SNE maps.
        evaluate(
            task.run_dir,
            EvalOptions(device=task.device, metrics=task.eval_metrics, save_embeddings=True),
            places=task.places,
            on_event=on_event,
        )
    except ConfigError:
        holder = run.holder()
        if holder is not None:  # claimed by another worker between our look and train()'s claim
            emit(on_event, Event("log", "bench", message=f"{label}: in use by {holder}, skipped"))
            return _busy(task, started, holder)
        raise
    except STOPPING:
        raise
    except DmlbenchError as error:
        emit(on_event, Event("log", "bench", message=f"{label}: failed: {error.message}"))
        return BenchRun(
            task.dataset, task.loss, task.seed, task.run_dir, "failed", time.perf_counter() - started, error.message
        )
    return BenchRun(task.dataset, task.loss, task.seed, task.run_dir, action, time.perf_counter() - started)


def baseline_task(task: BaselineTask, on_event: EventHandler | None = None, prefix: str = "") -> BenchRun:
    """Compute (or reuse, when complete with the same config) one baseline's run-like folder."""
    from dmlbench.evaluation.baselines import run_baseline
    from dmlbench.rundir import RunDir

    started = time.perf_counter()
    emit(on_event, Event("log", "bench", message=f"{prefix}baseline {task.label}"))
    try:
        result = run_baseline(
            task.baseline,
            task.dataset,
            places=task.places,
            backbone=task.backbone,
            device=task.device,
            on_event=on_event,
        )
    except STOPPING:
        raise
    except DmlbenchError as error:
        emit(on_event, Event("log", "bench", message=f"baseline {task.label}: failed: {error.message}"))
        folder = task.places.runs_root / "baselines"
        return BenchRun(task.dataset, task.baseline, 0, folder, "failed", time.perf_counter() - started, error.message)
    # The folder holding eval/test/metrics.json: the first ancestor that is a run.
    run_dir = next(parent for parent in Path(result.path).parents if RunDir(parent).exists())
    return BenchRun(task.dataset, task.baseline, 0, run_dir, "baseline", time.perf_counter() - started)


def execute(task: Task, on_event: EventHandler | None = None, prefix: str = "") -> BenchRun:
    """Run one task of the plan, whatever its kind."""
    if task.kind == "baseline":
        return baseline_task(task, on_event, prefix)
    return run_task(task, on_event, prefix)


def execute_quietly(task: Task) -> BenchRun:
    """The entry point of a worker process or SLURM task: no progress output, results come back."""
    return execute(task)
