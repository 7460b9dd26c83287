"""`train()`: check everything, claim the run folder, build the parts, run the loop, finish.

The loop is loop.py, the data split and sampler data.py, config resolution resolve.py, files rundir.py;
this module only puts them in order.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import torch

from dmlbench.config import TrainConfig, config_to_dict, diff_keys, dump_toml
from dmlbench.errors import ConfigError, DmlbenchError, InterruptedRunError
from dmlbench.events import Event, EventHandler, emit
from dmlbench.paths import child_path
from dmlbench.resolve import resolve_config
from dmlbench.rundir import DatasetRecord, Manifest, RunDir, RunKind, now_iso
from dmlbench.training.checkpoint import (
    Position,
    export_weights,
    load_checkpoint,
    position_of,
    save_checkpoint,
    set_rng_states,
)
from dmlbench.training.data import TrainData, epoch_loader
from dmlbench.training.distributed import DistContext, barrier, init_process_group
from dmlbench.training.loop import Parts, run_loop
from dmlbench.training.monitor import Scalars, Validator, margin_schedule
from dmlbench.training.optim import build_optimizer, build_scheduler
from dmlbench.utils.cpu import intra_op_threads
from dmlbench.utils.device import resolve_device
from dmlbench.utils.io import atomic_path
from dmlbench.utils.seed import seed_everything

logger = logging.getLogger(__name__)

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


@dataclass
class TrainHooks:
    """Calls into a caller's code during training (tuning feeds its pruner from `on_validation`)."""

    on_validation: Callable[[int, dict[str, Any]], None] | None = None


def train(
    cfg: TrainConfig,
    run_dir: str | PathLike[str] | None = None,
    *,
    data_root: str | PathLike[str],
    runs_root: str | PathLike[str] = "runs",
    resume: bool = False,
    force: bool = False,
    device: str = "auto",
    on_event: EventHandler | None = None,
    evaluate_at_end: bool = True,
    dist: DistContext | None = None,
    catalog: Sequence[str | PathLike[str]] = (),
    train_classes: Sequence[int] | None = None,
    kind: RunKind = "trained",
    hooks: TrainHooks | None = None,
    manifest_fields: Mapping[str, Any] | None = None,
) -> TrainSummary:
    """Train the embedder `cfg` describes into `run_dir` (default `runs_root/<run_id>`); evaluate on test at the end.

    Every input is checked before the folder is claimed, so a rejected run writes nothing. `train_classes`
    trains on those classes only and validates on the other training classes (tuning's folds);
    `manifest_fields` (study, trial, fold, tuned_params...) go into the manifest from the start.
    """
    from dmlbench.datasets import get_spec, open_or_prepare
    from dmlbench.paths import Places

    ctx = dist or DistContext()
    data_path, catalogs = Path(data_root), [Path(c) for c in catalog]
    torch_device = resolve_device(device)
    if ctx.enabled and torch_device.type == "cuda" and torch_device.index is None:
        torch_device = torch.device("cuda", ctx.local_rank)  # one GPU per torchrun process
        torch.cuda.set_device(torch_device)
    resolved = resolve_config(cfg, get_spec(cfg.dataset, Places.of(data_path, catalogs=catalogs)))
    assert resolved.run_id is not None
    run = RunDir(Path(run_dir) if run_dir is not None else child_path(Path(runs_root), resolved.run_id, "run_id"))
    _check_reusable(run, resolved, resume=resume, force=force)
    init_process_group(ctx, torch_device)
    # Rank 0 prepares a generated dataset if needed; the others open it once it exists.
    prepared = (
        open_or_prepare(resolved.dataset, Places.of(data_path, catalogs=catalogs), on_event=on_event)
        if ctx.is_main
        else None
    )
    barrier(ctx)
    if prepared is None:
        from dmlbench.datasets import open_prepared

        prepared = open_prepared(resolved.dataset, data_root=data_path)
    with intra_op_threads(resolved.schedule.threads):
        data = TrainData.build(prepared, resolved, ctx, train_classes=train_classes)
        job = _Run(resolved, run, data, torch_device, ctx, on_event if ctx.is_main else None, data_path, kind, hooks)
        job.manifest_fields = dict(manifest_fields or {})
        if not ctx.is_main:
            return job.execute(resume=resume, evaluate_at_end=False, catalogs=catalogs)
        with run.claim(holder="train"):
            # Checked again under the lock: another writer may have finished this folder meanwhile.
            _check_reusable(run, resolved, resume=resume, force=force)
            if force:
                run.clear()
            return job.execute(resume=resume, evaluate_at_end=evaluate_at_end, catalogs=catalogs)


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


def file_plugins(cfg: TrainConfig) -> list[tuple[Literal["loss", "backbone"], str, Path]]:
    """The (role, name, file) of each `path/to/file.py:Attr` name in a config (its loss and backbone)."""
    from dmlbench.registry import parse_plugin_name

    found: list[tuple[Literal["loss", "backbone"], str, Path]] = []
    for role, name in (("loss", cfg.loss.name), ("backbone", cfg.model.backbone or "")):
        plugin = parse_plugin_name(name)
        if plugin is not None and plugin.kind == "file":
            found.append((role, name, plugin.path))  # type: ignore[arg-type]
    return found


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


class _Run:
    """One training run's state and bookkeeping (only rank 0 writes)."""

    def __init__(
        self,
        cfg: TrainConfig,
        run: RunDir,
        data: TrainData,
        device: torch.device,
        ctx: DistContext,
        on_event: EventHandler | None,
        data_root: Path,
        kind: RunKind,
        hooks: TrainHooks | None,
    ) -> None:
        self.cfg, self.run, self.data, self.device, self.ctx = cfg, run, data, device, ctx
        self.on_event, self.data_root, self.kind, self.hooks = on_event, data_root, kind, hooks or TrainHooks()
        self.validator = Validator(cfg, data, device)
        self.scalars = Scalars(run.tensorboard_dir) if ctx.is_main else None
        self.manifest_fields: dict[str, Any] = {}

    def execute(self, *, resume: bool, evaluate_at_end: bool, catalogs: Sequence[Path]) -> TrainSummary:
        from dmlbench.losses import LOSSES
        from dmlbench.models import backbone_info, build_embedder

        cfg, run, ctx = self.cfg, self.run, self.ctx
        seed_everything(cfg.seed)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # every training batch has the same shape
        model = build_embedder(cfg.model).to(self.device)
        channels_last = bool(
            cfg.schedule.channels_last
            if cfg.schedule.channels_last is not None
            else self.device.type == "cuda" and backbone_info(cfg.model.backbone or "").channels_last
        )
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        loss_fn = LOSSES.build(
            cfg.loss.name, cfg.loss.kwargs(), embedding_dim=cfg.model.embedding_dim, num_classes=self.data.num_classes
        ).to(self.device)
        optimizer = build_optimizer(model, cfg.optim, loss_fn)
        steps_per_epoch = len(self.data.sampler.batches(0))
        epochs = cfg.schedule.epochs or 1
        total_steps = cfg.schedule.steps or epochs * steps_per_epoch
        scheduler = build_scheduler(optimizer, cfg.schedule, total_steps=total_steps)
        amp_dtype = self._amp_dtype()
        scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None

        position, resumed_from, seconds_before = Position(), None, 0.0
        if resume:
            payload = load_checkpoint(run.last_checkpoint, run_id=self._run_id)
            model.load_state_dict(payload["model"])
            if payload.get("loss"):
                loss_fn.load_state_dict(payload["loss"])
            optimizer.load_state_dict(payload["optimizer"])
            scheduler.load_state_dict(payload["scheduler"])
            if scaler is not None and payload["scaler"] is not None:
                scaler.load_state_dict(payload["scaler"])
            position, self.validator.best = position_of(payload), payload.get("best")
            set_rng_states(payload["rng"])
            resumed_from = position.step
            # Killed after the last step but before being marked complete: the loop is a no-op and the
            # run just finishes (exports model.pt, marks complete); only a complete run has nothing to do.
            if position.step >= total_steps and run.status() == "complete":
                raise ConfigError(
                    f"{run.root} already trained {position.step} steps; nothing to resume",
                    hint="raise --epochs/--steps to continue, or --force to start over",
                )
            if ctx.is_main:
                seconds_before = run.truncate_history(step=position.step, epoch=position.epoch)
            emit(self.on_event, Event("log", "train", message=f"resuming {self._run_id} from step {position.step}"))
        if ctx.is_main:
            self._start_manifest(resume=resume)
        barrier(ctx)

        wrapped: torch.nn.Module = model
        if ctx.enabled:
            wrapped = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        model.train()
        parts = Parts(
            model=wrapped,
            loss_fn=loss_fn,
            optimizer=optimizer,
            scheduler=scheduler,
            scaler=scaler,
            batches=self.data.sampler.batches,
            loader=epoch_loader(self.data, cfg, ctx, self.device),
            device=self.device,
            dist=ctx,
            total_steps=total_steps,
            global_batch_size=self.data.batch_size,
            checkpoint_every=cfg.schedule.checkpoint_every,
            grad_clip=cfg.optim.grad_clip,
            amp_dtype=amp_dtype,
            channels_last=channels_last,
            on_event=self.on_event,
            save_checkpoint=lambda pos: self._save(model, optimizer, scheduler, scaler, loss_fn, pos),
            write_history=self._write_history,
            validate=lambda epoch: self.validator(model, epoch, best_path=run.best_path) if ctx.is_main else None,
            log=self._log,
            on_step=self.scalars.step if self.scalars is not None else None,
            on_validation=self._on_validation,
            before_step=margin_schedule(cfg, loss_fn),
        )
        if not resume and ctx.is_main:
            self._save(model, optimizer, scheduler, scaler, loss_fn, position)
        started = time.perf_counter()
        try:
            outcome = run_loop(parts, position, seconds_before=seconds_before)
        except InterruptedRunError as err:
            self._finish_status("interrupted", err.message, position)
            raise
        except DmlbenchError as err:
            self._finish_status("failed", err.message, position)
            raise
        except BaseException as err:
            self._finish_status("failed", f"{type(err).__name__}: {err}", position)
            raise
        finally:
            if self.scalars is not None:
                self.scalars.close()
        position = outcome.position
        seconds = time.perf_counter() - started
        final_loss, images_per_s = outcome.last_loss, outcome.images_per_s
        if final_loss is None and ctx.is_main:  # resumed after the last step: the loop ran no step
            final_loss = run.read_history().last_loss()
        if ctx.is_main:
            use_best = self.validator.best is not None and run.best_path.is_file()
            if use_best:
                with atomic_path(run.model_path) as tmp:
                    shutil.copyfile(run.best_path, tmp)
            else:
                export_weights(run.model_path, model)
            self._finish_status("complete", None, position)
            self._log(f"complete: {position.step} steps, model.pt from {'best val' if use_best else 'last'} weights")
        barrier(ctx)
        test_metrics = None
        if evaluate_at_end and ctx.is_main:
            from dmlbench.evaluation import EvalOptions, evaluate
            from dmlbench.paths import Places

            emit(self.on_event, Event("log", "evaluate", message="evaluating on the test split"))
            result = evaluate(
                run.root,
                EvalOptions(device=str(self.device)),
                places=Places.of(self.data_root),
                on_event=self.on_event,
                locked=True,
            )
            test_metrics = dict(result.metrics)
        return TrainSummary(
            run_dir=run.root,
            run_id=self._run_id,
            status="complete",
            steps=position.step,
            # A run stopped by --steps inside an epoch trained in that epoch too ("6 steps, 1 epochs", not 0).
            epochs=position.epoch + (1 if position.batch else 0),
            final_loss=final_loss,
            seconds=seconds,
            images_per_s=images_per_s,
            resumed_from_step=resumed_from,
            best_val=self.validator.best,
            test_metrics=test_metrics,
            config=cfg,
        )

    @property
    def _run_id(self) -> str:
        return self.cfg.run_id or self.run.run_id

    def _amp_dtype(self) -> torch.dtype | None:
        amp = self.cfg.schedule.amp
        if amp == "off" or (amp == "auto" and self.device.type != "cuda"):
            return None
        if amp == "fp16":
            return torch.float16
        if amp == "bf16" or torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16

    # -- files (rank 0) ----------------------------------------------------------------------------

    def _start_manifest(self, *, resume: bool) -> None:
        from dmlbench.losses import LOSSES
        from dmlbench.models import BACKBONES
        from dmlbench.provenance import git_commit, versions
        from dmlbench.registry import module_plugin_versions

        run, cfg = self.run, self.cfg
        previous = run.read_manifest() if resume and run.exists() else None
        # A copy of each plugin file (and its sha256): report names the version, --resume refuses another.
        plugins = [run.write_plugin_copy(role, name, path, path.read_bytes()) for role, name, path in file_plugins(cfg)]
        run.write_manifest(
            Manifest(
                run_id=self._run_id,
                kind=self.kind,
                status="running",
                created=previous.created if previous is not None else now_iso(),
                versions=versions(),
                git_commit=git_commit(),
                device=str(self.device),
                world_size=self.ctx.world_size,
                threads=cfg.schedule.threads,
                dataset=DatasetRecord.from_prepared(self.data.prepared),
                val_classes=self.data.val_classes,
                last_step=previous.last_step if previous is not None else 0,
                last_epoch=previous.last_epoch if previous is not None else 0,
                plugins=plugins,
                module_plugins=module_plugin_versions([(LOSSES, cfg.loss.name), (BACKBONES, cfg.model.backbone or "")]),
                **self.manifest_fields,
            )
        )
        run.write_config(dump_toml(cfg))
        if not resume:
            run.start_history()
        self._log(("resumed " if resume else "started ") + json.dumps(config_to_dict(cfg), sort_keys=True))

    def _finish_status(self, status: str, error: str | None, position: Position) -> None:
        if self.ctx.is_main and self.run.exists():
            if status != "complete":
                self.run.truncate_history(step=position.step, epoch=position.epoch)
            self.run.set_status(status, error=error, last_step=position.step, last_epoch=position.epoch)  # type: ignore[arg-type]
            self._log(f"{status}" + (f": {error}" if error else ""))

    def _save(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        scaler: torch.amp.GradScaler | None,
        loss_fn: torch.nn.Module,
        position: Position,
    ) -> None:
        if self.ctx.is_main:
            save_checkpoint(
                self.run.last_checkpoint,
                run_id=self._run_id,
                model=model,
                optimizer=optimizer,
                scheduler=scheduler,
                scaler=scaler,
                position=position,
                best=self.validator.best,
                loss_fn=loss_fn,
            )

    def _write_history(self, rows: list[dict[str, Any]]) -> None:
        if self.ctx.is_main:
            self.run.append_history(rows)

    def _log(self, message: str) -> None:
        if self.ctx.is_main:
            logger.debug(message)
            self.run.log(message)

    def _on_validation(self, epoch: int, values: dict[str, Any]) -> None:
        if self.scalars is not None:
            self.scalars.validation(epoch, values)
        if self.hooks.on_validation is not None:
            self.hooks.on_validation(epoch, values)
