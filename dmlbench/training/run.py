"""`train()`: build the parts of a run (data, model, optimizer, run directory), run the loop, finish.

The loop itself is in loop.py; this file is the set-up and the bookkeeping around it.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import platform
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import dmlbench
from dmlbench.config import TrainConfig, config_to_dict, diff_keys, dump_toml, load_config, resolve_config
from dmlbench.errors import ConfigError, DmlbenchError, InterruptedRunError, MissingInputError
from dmlbench.events import Event, EventHandler, emit
from dmlbench.rundir import RunDir, now_iso
from dmlbench.training.checkpoint import (
    Position,
    export_weights,
    load_checkpoint,
    position_of,
    save_checkpoint,
    set_rng_states,
)
from dmlbench.training.distributed import DistContext, barrier, init_process_group
from dmlbench.training.loop import Parts, run_loop
from dmlbench.training.optim import build_optimizer, build_scheduler
from dmlbench.utils.device import resolve_device
from dmlbench.utils.io import append_line, atomic_path, write_text_atomic
from dmlbench.utils.seed import seed_everything

logger = logging.getLogger(__name__)

# A resumed run may train longer than first planned; anything else changing means "a different run".
RESUMABLE_CHANGES = frozenset({"schedule.epochs", "schedule.steps"})


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
    run_dir: Path | None = None,
    *,
    data_root: Path,
    runs_root: Path = Path("runs"),
    resume: bool = False,
    force: bool = False,
    device: str = "auto",
    on_event: EventHandler | None = None,
    evaluate_at_end: bool = True,
    dist: DistContext | None = None,
) -> TrainSummary:
    """Train the embedder `cfg` describes into `run_dir` (default `runs_root/<run_id>`); evaluate on test at the end."""
    from dmlbench.datasets import get_spec

    ctx = dist or DistContext()
    torch_device = resolve_device(device)
    if ctx.enabled and torch_device.type == "cuda" and torch_device.index is None:
        torch_device = torch.device("cuda", ctx.local_rank)  # one GPU per torchrun process
        torch.cuda.set_device(torch_device)
    resolved = resolve_config(cfg, get_spec(cfg.dataset))
    assert resolved.run_id is not None
    run = RunDir(run_dir if run_dir is not None else runs_root / resolved.run_id)
    _check_reusable(run, resolved, resume=resume, force=force)
    init_process_group(ctx, torch_device)
    if force and ctx.is_main:
        _clear_run(run)
    # Rank 0 prepares `digits` if needed; the others open it once it exists.
    prepared = _open_dataset(resolved.dataset, data_root, on_event) if ctx.is_main else None
    barrier(ctx)
    if prepared is None:
        from dmlbench.datasets import open_prepared

        prepared = open_prepared(resolved.dataset, data_root=data_root)
    data = _TrainData.build(prepared, resolved, ctx)
    return _Run(resolved, run, data, torch_device, ctx, on_event if ctx.is_main else None, data_root).execute(
        resume=resume, evaluate_at_end=evaluate_at_end
    )


def _check_reusable(run: RunDir, resolved: TrainConfig, *, resume: bool, force: bool) -> None:
    """Refuse a run folder holding another run (or nothing, on --resume) before any work starts."""
    if not run.exists() or force:
        if resume and not force:
            raise MissingInputError(f"nothing to resume: {run.root} holds no run", hint="drop --resume to start it")
        run.check_reusable(same_config=True, resume=resume, force=force)
        return
    try:
        stored = load_config(run.config_path)
    except DmlbenchError:
        stored = None
    if stored is None:
        changed = ["config.toml"]
    else:
        changed = diff_keys(stored, resolved, ignore=RESUMABLE_CHANGES if resume else frozenset())
    run.check_reusable(same_config=not changed, resume=resume, force=force)


def _clear_run(run: RunDir) -> None:
    """--force: remove this contract's files (never anything else in the folder)."""
    for path in (run.train_dir, run.root / "eval"):
        if path.is_dir():
            shutil.rmtree(path)
    for path in (run.manifest_path, run.config_path):
        path.unlink(missing_ok=True)


def _open_dataset(name: str, data_root: Path, on_event: EventHandler | None) -> Any:
    from dmlbench.datasets import open_prepared, prepare

    try:
        return open_prepared(name, data_root=data_root)
    except MissingInputError:
        if name != "digits":
            raise
    # The embedded default dataset is prepared on demand so `dmlbench train` works right after install.
    emit(on_event, Event("log", "prepare", message=f"preparing {name} in {data_root}"))
    return prepare(name, data_root=data_root, on_event=on_event)


@dataclass
class _TrainData:
    prepared: Any
    dataset: Any
    val_frame: Any
    sampler: Any
    num_classes: int

    @staticmethod
    def build(prepared: Any, cfg: TrainConfig, ctx: DistContext) -> _TrainData:
        from dmlbench.datasets.sampler import PKBatchSampler
        from dmlbench.datasets.torch_data import build_dataset
        from dmlbench.losses import LOSSES

        index = prepared.index
        train_frame = index[index["split"] == "train"].reset_index(drop=True)
        val_frame = train_frame.iloc[:0]
        if cfg.validation.val_classes > 0:
            from dmlbench.evaluation.metrics import metric_info

            metric_info(cfg.validation.metric)  # a typo fails now, not after the first epoch of training
            classes = np.unique(train_frame["label"].to_numpy())
            n_val = max(2, round(cfg.validation.val_classes * len(classes)))
            if n_val >= len(classes):
                raise ConfigError(
                    f"validation.val_classes={cfg.validation.val_classes} leaves no training classes "
                    f"({len(classes)} in the train split)",
                    hint="use a smaller --val-classes",
                )
            held_out = np.random.default_rng(cfg.seed).choice(classes, size=n_val, replace=False)
            is_val = train_frame["label"].isin(held_out)
            val_frame = train_frame[is_val].reset_index(drop=True)
            train_frame = train_frame[~is_val].reset_index(drop=True)
        labels = train_frame["label"].to_numpy().astype(np.int64)
        p, k = cfg.sampler.classes_per_batch, cfg.sampler.samples_per_class
        assert p is not None and k is not None and cfg.model.image_size is not None
        need_k = int(getattr(LOSSES.get(cfg.loss.name), "min_samples_per_class", 2))
        if k < need_k:
            raise ConfigError(
                f"loss {cfg.loss.name!r} needs at least {need_k} images per class in a batch, "
                f"but sampler.samples_per_class = {k}",
                hint=f"use --set sampler.samples_per_class={need_k} (or more)",
            )
        _, counts = np.unique(labels, return_counts=True)
        # The sampler draws K with replacement from small classes but needs two images for a positive pair.
        usable = int((counts >= min(2, k)).sum())
        if p > usable:
            held = f" after holding out {val_frame['label'].nunique()} validation classes" if len(val_frame) else ""
            raise ConfigError(
                f"a {p}x{k} batch needs {p} classes, but the train split of {cfg.dataset!r}{held} has {usable} "
                "usable classes",
                hint=f"lower sampler.classes_per_batch to at most {usable}",
            )
        if p % ctx.world_size:
            raise ConfigError(
                f"sampler.classes_per_batch={p} does not split over {ctx.world_size} processes",
                hint=f"use a multiple of {ctx.world_size}",
            )
        dataset = build_dataset(
            prepared, train_frame, train=True, image_size=cfg.model.image_size, channels=cfg.model.in_channels
        )
        sampler = PKBatchSampler(labels, p, k, seed=cfg.seed, num_replicas=ctx.world_size, rank=ctx.rank)
        return _TrainData(prepared, dataset, val_frame, sampler, int(len(counts)))


def batch_loader(
    dataset: Any, batches: Sequence[Sequence[int]], *, num_workers: int = 0, pin_memory: bool = False
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (images, labels) for each index list: vectorised `get_batch` when the dataset has it."""
    if hasattr(dataset, "get_batch"):
        for indices in batches:
            images, labels = dataset.get_batch(list(indices))
            yield torch.as_tensor(images), torch.as_tensor(labels)
        return
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=[list(b) for b in batches], num_workers=num_workers, pin_memory=pin_memory
    )
    for images, labels in loader:
        yield images, labels


def _versions() -> dict[str, str | None]:
    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "dmlbench": dmlbench.__version__,
        "torch": torch.__version__,
        "torchvision": version("torchvision"),
        "faiss": version("faiss-cpu") or version("faiss-gpu-cu12"),
        "python": platform.python_version(),
    }


def _git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(dmlbench.__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


class _Run:
    """One training run's state and bookkeeping (only rank 0 writes)."""

    def __init__(
        self,
        cfg: TrainConfig,
        run: RunDir,
        data: _TrainData,
        device: torch.device,
        ctx: DistContext,
        on_event: EventHandler | None,
        data_root: Path,
    ) -> None:
        self.cfg, self.run, self.data, self.device, self.ctx = cfg, run, data, device, ctx
        self.on_event, self.data_root = on_event, data_root
        self.best: dict[str, Any] | None = None

    def execute(self, *, resume: bool, evaluate_at_end: bool) -> TrainSummary:
        from dmlbench.losses import LOSSES
        from dmlbench.models import build_embedder

        cfg, run, ctx = self.cfg, self.run, self.ctx
        seed_everything(cfg.seed)
        model = build_embedder(cfg.model).to(self.device)
        channels_last = bool(
            cfg.schedule.channels_last
            if cfg.schedule.channels_last is not None
            else self.device.type == "cuda" and cfg.model.backbone != "small_cnn"
        )
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        loss_fn = LOSSES.build(
            cfg.loss.name, cfg.loss.kwargs(), embedding_dim=cfg.model.embedding_dim, num_classes=self.data.num_classes
        ).to(self.device)
        optimizer = build_optimizer(model, cfg.optim)
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
            optimizer.load_state_dict(payload["optimizer"])
            scheduler.load_state_dict(payload["scheduler"])
            if scaler is not None and payload["scaler"] is not None:
                scaler.load_state_dict(payload["scaler"])
            position, self.best = position_of(payload), payload.get("best")
            set_rng_states(payload["rng"])
            resumed_from = position.step
            # Killed after the last step but before being marked complete: the loop is a no-op and the
            # run just finishes (exports model.pt, marks complete); only a complete run has nothing to do.
            if position.step >= total_steps and run.status() == "complete":
                raise ConfigError(
                    f"{run.root} already trained {position.step} steps; nothing to resume",
                    hint="raise --epochs/--steps to continue, or --force to start over",
                )
            seconds_before = self._truncate_history(position) if ctx.is_main else 0.0
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
        batches_of = self.data.sampler.batches
        parts = Parts(
            model=wrapped,
            loss_fn=loss_fn,
            optimizer=optimizer,
            scheduler=scheduler,
            scaler=scaler,
            batches=batches_of,
            loader=lambda lists: batch_loader(
                self.data.dataset, lists, num_workers=cfg.schedule.num_workers, pin_memory=self.device.type == "cuda"
            ),
            device=self.device,
            dist=ctx,
            total_steps=total_steps,
            global_batch_size=(cfg.sampler.classes_per_batch or 0) * (cfg.sampler.samples_per_class or 0),
            checkpoint_every=cfg.schedule.checkpoint_every,
            grad_clip=cfg.optim.grad_clip,
            amp_dtype=amp_dtype,
            channels_last=channels_last,
            on_event=self.on_event,
            save_checkpoint=lambda pos: self._save(model, optimizer, scheduler, scaler, pos),
            write_history=self._write_history,
            validate=lambda epoch: self._validate(model, epoch),
            log=self._log,
        )
        if not resume and ctx.is_main:
            self._save(model, optimizer, scheduler, scaler, position)
        started = time.perf_counter()
        try:
            position = run_loop(parts, position, seconds_before=seconds_before)
        except InterruptedRunError as err:
            self._finish_status("interrupted", err.message, position)
            raise
        except DmlbenchError as err:
            self._finish_status("failed", err.message, position)
            raise
        except BaseException as err:
            self._finish_status("failed", f"{type(err).__name__}: {err}", position)
            raise
        seconds = time.perf_counter() - started
        final_loss, images_per_s = self._last_history_row()
        if ctx.is_main:
            use_best = self.best is not None and run.best_path.is_file()
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
            from dmlbench.evaluation import evaluate

            emit(self.on_event, Event("log", "evaluate", message="evaluating on the test split"))
            result = evaluate(run.root, data_root=self.data_root, device=str(self.device), on_event=self.on_event)
            test_metrics = dict(getattr(result, "metrics", {}) or {})
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
            best_val=self.best,
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
        run, cfg = self.run, self.cfg
        info = dict(getattr(self.data.prepared, "info", {}) or {})
        previous = run.read_manifest() if resume and run.exists() else {}
        run.write_manifest(
            {
                "run_id": self._run_id,
                "status": "running",
                "created": previous.get("created", now_iso()),
                "finished": None,
                "versions": _versions(),
                "git_commit": _git_commit(),
                "device": str(self.device),
                "world_size": self.ctx.world_size,
                "dataset": {
                    "name": cfg.dataset,
                    "fingerprint": getattr(self.data.prepared, "fingerprint", None),
                    "protocol": info.get("protocol"),
                    "splits": info.get("splits"),
                    "train_test_disjoint": info.get("train_test_disjoint"),
                },
                # evaluation reads this list instead of re-deriving the held-out classes.
                "val_classes": sorted(int(label) for label in self.data.val_frame["label"].unique()),
                "error": None,
                "last_step": previous.get("last_step", 0),
                "last_epoch": previous.get("last_epoch", 0),
            }
        )
        run.write_config(dump_toml(cfg))
        if not resume:
            write_text_atomic(run.history_path, "")
        self._log(("resumed " if resume else "started ") + json.dumps(config_to_dict(cfg), sort_keys=True))

    def _finish_status(self, status: str, error: str | None, position: Position) -> None:
        if self.ctx.is_main and self.run.exists():
            if status != "complete":
                self._truncate_history(position)
            self.run.set_status(status, error=error, last_step=position.step, last_epoch=position.epoch)  # type: ignore[arg-type]
            self._log(f"{status}" + (f": {error}" if error else ""))

    def _save(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        scaler: torch.amp.GradScaler | None,
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
                best=self.best,
            )

    def _write_history(self, rows: list[dict[str, Any]]) -> None:
        if self.ctx.is_main and rows:
            append_line(self.run.history_path, "\n".join(json.dumps(row) for row in rows))

    def _log(self, message: str) -> None:
        if self.ctx.is_main:
            logger.debug(message)
            self.run.log(message)

    def _read_history(self) -> list[dict[str, Any]]:
        path = self.run.history_path
        if not path.is_file():
            return []
        rows = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line torn by a kill mid-write
                continue
            if isinstance(row, dict):
                rows.append(row)
        return rows

    def _truncate_history(self, position: Position) -> float:
        """Keep each row once, up to the checkpoint (later rows are replayed); return the seconds so far."""
        kept, seen = [], set()
        for row in self._read_history():
            key = ("step", row["step"]) if "step" in row else ("val", row.get("epoch"))
            is_step = key[0] == "step" and row["step"] <= position.step
            is_val = key[0] == "val" and "val" in row and row["epoch"] <= position.epoch
            if (is_step or is_val) and key not in seen:
                seen.add(key)
                kept.append(row)
        write_text_atomic(self.run.history_path, "".join(json.dumps(row) + "\n" for row in kept))
        steps = [row for row in kept if "step" in row]
        return float(steps[-1]["seconds"]) if steps else 0.0

    def _last_history_row(self) -> tuple[float | None, float | None]:
        if not self.ctx.is_main:
            return None, None
        steps = [row for row in self._read_history() if "step" in row]
        if not steps:
            return None, None
        tail = steps[-min(len(steps), 50) :]
        return float(steps[-1]["loss"]), float(np.median([row["images_per_s"] for row in tail]))

    # -- validation on held-out training classes ------------------------------------------------------

    def _validate(self, model: torch.nn.Module, epoch: int) -> dict[str, Any] | None:
        cfg = self.cfg.validation
        if len(self.data.val_frame) == 0 or epoch % cfg.every or not self.ctx.is_main:
            return None
        from dmlbench.datasets.torch_data import build_dataset
        from dmlbench.evaluation import evaluate_embeddings
        from dmlbench.evaluation.metrics import higher_is_better

        frame = self.data.val_frame
        dataset = build_dataset(
            self.data.prepared,
            frame,
            train=False,
            image_size=self.cfg.model.image_size,
            channels=self.cfg.model.in_channels,
        )
        chunks = [list(range(i, min(i + 256, len(frame)))) for i in range(0, len(frame), 256)]
        was_training = model.training
        model.eval()
        embedded: list[torch.Tensor] = []
        with torch.no_grad():
            for images, _ in batch_loader(dataset, chunks, num_workers=self.cfg.schedule.num_workers):
                embedded.append(model(images.to(self.device)).float().cpu())
        model.train(was_training)
        metrics = {cfg.metric, "recall@1"}
        values = evaluate_embeddings(
            torch.cat(embedded).numpy(),
            frame["label"].to_numpy(),
            metrics=sorted(metrics),
            device="cpu",
            seed=self.cfg.seed,
        )
        if cfg.metric not in values:
            raise ConfigError(f"validation.metric {cfg.metric!r} is not a metric", hint=f"use one of {sorted(values)}")
        value = float(values[cfg.metric])
        best = self.best
        better = best is None or (value > best["value"] if higher_is_better(cfg.metric) else value < best["value"])
        if better:
            self.best = {"epoch": epoch, "metric": cfg.metric, "value": value}
            export_weights(self.run.best_path, model)
        return {k: float(v) for k, v in values.items()}
