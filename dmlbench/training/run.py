"""`train()`: check everything, claim the run folder, build the parts, run the loop, finish.

The parts are built in parts.py, trained in loop.py, saved and restored by checkpoint.py and written to the
run folder by recorder.py (rank 0 only); the data split and sampler are data.py's. This module puts them in
order.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import torch

from dmlbench.config import TrainConfig, diff_keys
from dmlbench.errors import ConfigError, DmlbenchError, InterruptedRunError
from dmlbench.events import Event, EventHandler, emit
from dmlbench.paths import Places, child_path
from dmlbench.resolve import resolve_config
from dmlbench.rundir import RunDir
from dmlbench.training import checkpoint
from dmlbench.training.checkpoint import Position, load_checkpoint
from dmlbench.training.data import TrainData
from dmlbench.training.distributed import DistContext, barrier, init_process_group
from dmlbench.training.loop import run_loop
from dmlbench.training.monitor import Validator
from dmlbench.training.parts import build_parts
from dmlbench.training.recorder import NullRecorder, Recorder, RunMeta, TrainHooks
from dmlbench.utils.cpu import intra_op_threads
from dmlbench.utils.device import resolve_device

# A resumed run may train longer than first planned; anything else changing means "a different run".
# How long to train, and how the data is loaded (never what it looks like), may change on resume.
RESUMABLE_CHANGES = frozenset({"schedule.epochs", "schedule.steps", "schedule.num_workers", "schedule.decode_cache"})


@dataclass
class TrainSummary:
    """What a finished `train()` reports (the CLI prints it as one line)."""

    run_dir: Path
    run_id: str
    status: str
    steps: int
    epochs: int  # epochs trained in, counting a last one that --steps ended part-way
    final_loss: float | None
    seconds: float
    images_per_s: float | None
    resumed_from_step: int | None = None
    best_val: dict[str, Any] | None = None
    test_metrics: dict[str, float] | None = None
    config: TrainConfig | None = field(default=None, repr=False)


def train(
    cfg: TrainConfig,
    run_dir: str | PathLike[str] | None = None,
    *,
    places: Places,
    resume: bool = False,
    force: bool = False,
    device: str = "auto",
    on_event: EventHandler | None = None,
    evaluate_at_end: bool = True,
    dist: DistContext | None = None,
    train_classes: Sequence[int] | None = None,
    meta: RunMeta | None = None,
    hooks: TrainHooks | None = None,
) -> TrainSummary:
    """Train the embedder `cfg` describes into `run_dir` (default `places.runs_root/<run_id>`); test it at the end.

    Every input is checked before the folder is claimed, so a rejected run writes nothing. `train_classes`
    trains on those classes only and validates on the other training classes (tuning's folds); `meta` (the
    run's kind, and the study, trial, fold or tuned parameters of tuning's runs) goes into the manifest.
    """
    from dmlbench.datasets import get_spec, open_or_prepare, open_prepared

    ctx = dist or DistContext()
    torch_device = resolve_device(device)
    if ctx.enabled and torch_device.type == "cuda" and torch_device.index is None:
        torch_device = torch.device("cuda", ctx.local_rank)  # one GPU per torchrun process
        torch.cuda.set_device(torch_device)
    resolved = resolve_config(cfg, get_spec(cfg.dataset, places))
    assert resolved.run_id is not None
    run = RunDir(Path(run_dir) if run_dir is not None else child_path(places.runs_root, resolved.run_id, "run_id"))
    _check_reusable(run, resolved, resume=resume, force=force)
    init_process_group(ctx, torch_device)
    on_event = on_event if ctx.is_main else None  # progress and messages are rank 0's
    # Rank 0 prepares a generated dataset if needed; the others open it once it exists.
    prepared = open_or_prepare(resolved.dataset, places, on_event=on_event) if ctx.is_main else None
    barrier(ctx)
    if prepared is None:
        prepared = open_prepared(resolved.dataset, data_root=places.data_root)
    job = _Job(resolved, run, torch_device, ctx, on_event, places, resume=resume)
    with intra_op_threads(resolved.schedule.threads):
        data = TrainData.build(prepared, resolved, ctx, train_classes=train_classes)
        if not ctx.is_main:
            return job.execute(data, NullRecorder(), evaluate_at_end=False)
        with run.claim(holder="train"):
            # Checked again under the lock: another writer may have finished this folder meanwhile.
            _check_reusable(run, resolved, resume=resume, force=force)
            if force:
                run.clear()
            recorder = Recorder(run, resolved.run_id, meta or RunMeta(), hooks or TrainHooks(), on_event)
            return job.execute(data, recorder, evaluate_at_end=evaluate_at_end)


def _check_reusable(run: RunDir, resolved: TrainConfig, *, resume: bool, force: bool) -> None:
    """Refuse a run folder holding another run (or nothing, on --resume) before any work starts."""
    if not run.exists() or force:
        run.check_reusable(same_config=True, resume=resume, force=force)
        return
    if resume:
        _check_plugins_unchanged(run)
    try:
        stored = run.read_config()
    except DmlbenchError:
        stored = None
    if stored is None:
        changed = ["config.toml"]
    else:
        changed = diff_keys(stored, resolved, ignore=RESUMABLE_CHANGES if resume else frozenset())
    run.check_reusable(same_config=not changed, resume=resume, force=force)


def _check_plugins_unchanged(run: RunDir) -> None:
    """--resume continues only with the plugin files the run started with (their sha256 is in the manifest)."""
    from dmlbench.registry import file_sha256, parse_plugin_name

    try:
        records = run.read_manifest().plugins
    except DmlbenchError:
        return  # no readable manifest: check_reusable reports the folder
    for record in records:
        plugin = parse_plugin_name(record.name)
        path = plugin.path if plugin is not None else Path(record.path)
        now = file_sha256(path) if path.is_file() else None
        if now != record.sha256:
            state = f"sha256 {now[:12]} now" if now else f"{path} is missing"
            raise ConfigError(
                f"{record.role} plugin {record.name} changed since {run.run_id} started "
                f"(sha256 {record.sha256[:12]} recorded, {state}); resuming would mix two versions",
                hint=f"restore the file from the run's copy {run.root / record.stored}, or start over with --force",
            )


@dataclass
class _Job:
    """One run's fixed facts; `execute` is the run from built parts to a summary."""

    cfg: TrainConfig
    run: RunDir
    device: torch.device
    ctx: DistContext
    on_event: EventHandler | None
    places: Places
    resume: bool

    def execute(self, data: TrainData, recorder: Recorder, *, evaluate_at_end: bool) -> TrainSummary:
        cfg, run, ctx, run_id = self.cfg, self.run, self.ctx, str(self.cfg.run_id)
        parts = build_parts(cfg, data, self.device, ctx)
        parts.recorder = recorder
        parts.validator = Validator(cfg, data, self.device, recorder) if ctx.is_main else None
        position, resumed_from, seconds_before = Position(), None, 0.0
        if self.resume:
            position, best = checkpoint.restore(load_checkpoint(run.last_checkpoint, run_id=run_id), parts)
            if parts.validator is not None:
                parts.validator.best = best
            resumed_from = position.step
            # Killed after the last step but before being marked complete: the loop is a no-op and the
            # run just finishes (exports model.pt, marks complete); only a complete run has nothing to do.
            if position.step >= parts.total_steps and run.status() == "complete":
                raise ConfigError(
                    f"{run.root} already trained {position.step} steps; nothing to resume",
                    hint="raise --epochs/--steps to continue, or --force to start over",
                )
            seconds_before = recorder.resumed(position)
            emit(self.on_event, Event("log", "train", message=f"resuming {run_id} from step {position.step}"))
        recorder.start(cfg, data, device=self.device, world_size=ctx.world_size, resume=self.resume)
        barrier(ctx)
        if ctx.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            parts.ddp = torch.nn.parallel.DistributedDataParallel(parts.model, device_ids=device_ids)
        parts.model.train()
        if not self.resume:
            recorder.checkpoint(parts, position, None)
        started = time.perf_counter()
        try:
            outcome = run_loop(parts, position, seconds_before=seconds_before)
        except InterruptedRunError as err:
            recorder.finish("interrupted", err.message, position)
            raise
        except DmlbenchError as err:
            recorder.finish("failed", err.message, position)
            raise
        except BaseException as err:
            recorder.finish("failed", f"{type(err).__name__}: {err}", position)
            raise
        finally:
            recorder.close()
        position, seconds = outcome.position, time.perf_counter() - started
        # Resumed after the last step, the loop ran none: the history has the last loss.
        final_loss = outcome.last_loss if outcome.last_loss is not None else recorder.last_loss()
        recorder.complete(parts.model, position, parts.best)
        barrier(ctx)
        test_metrics = None
        if evaluate_at_end:
            from dmlbench.evaluation import EvalOptions, evaluate

            emit(self.on_event, Event("log", "evaluate", message="evaluating on the test split"))
            result = evaluate(
                run.root, EvalOptions(device=str(self.device)), places=self.places, on_event=self.on_event, locked=True
            )
            test_metrics = dict(result.metrics)
        return TrainSummary(
            run_dir=run.root,
            run_id=run_id,
            status="complete",
            steps=position.step,
            # A run stopped by --steps inside an epoch trained in that epoch too ("6 steps, 1 epochs", not 0).
            epochs=position.epoch + (1 if position.batch else 0),
            final_loss=final_loss,
            seconds=seconds,
            images_per_s=outcome.images_per_s,
            resumed_from_step=resumed_from,
            best_val=parts.best,
            test_metrics=test_metrics,
            config=cfg,
        )
