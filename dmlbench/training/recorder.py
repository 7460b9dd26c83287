"""What a run leaves in its folder while it trains, and the progress it shows: rank 0's only.

`Recorder` owns the manifest, config.toml, history, log, TensorBoard scalars, last.pt, best.pt and model.pt,
and hands progress events to the caller's `on_event`; every other rank gets its `NullRecorder` twin, so
neither the loop nor the orchestrator asks which rank it is.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from dmlbench.config import TrainConfig, config_to_dict, dump_toml
from dmlbench.events import Event, EventHandler, emit
from dmlbench.rundir import DatasetRecord, Manifest, RunDir, RunKind, now_iso
from dmlbench.training.checkpoint import Position, TrainState, export_weights, save_checkpoint
from dmlbench.training.data import TrainData
from dmlbench.utils.io import atomic_path

logger = logging.getLogger(__name__)
Ending = Literal["complete", "interrupted", "failed"]  # how a run's training ended


@dataclass(frozen=True)
class RunMeta:
    """What a run is, beyond its config: its kind and, for tuning's runs, the study that asked for it.

    Written into the manifest once, when the run starts (`Manifest` fields of the same names).
    """

    kind: RunKind = "trained"
    study: str | None = None
    trial: int | None = None
    fold: int | None = None  # only with K > 1 validation folds
    tuned_params: dict[str, Any] | None = None  # the parameters a final run was trained with
    tuning_trials: int | None = None  # how many finished trials chose them


@dataclass
class TrainHooks:
    """Calls into a caller's code during training (tuning feeds its pruner from `on_validation`)."""

    on_validation: Callable[[int, dict[str, Any]], None] | None = None


def file_plugins(cfg: TrainConfig) -> list[tuple[Literal["loss", "backbone"], str, Path]]:
    """The (role, name, file) of each `path/to/file.py:Attr` name in a config (its loss and backbone)."""
    from dmlbench.registry import parse_plugin_name

    found: list[tuple[Literal["loss", "backbone"], str, Path]] = []
    for role, name in (("loss", cfg.loss.name), ("backbone", cfg.model.backbone or "")):
        plugin = parse_plugin_name(name)
        if plugin is not None and plugin.kind == "file":
            found.append((role, name, plugin.path))  # type: ignore[arg-type]
    return found


class Scalars:
    """TensorBoard scalars under `<run_dir>/tensorboard/` (the writer opens on the first scalar)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.writer: Any = None

    def _open(self) -> Any:
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.folder))
        return self.writer

    def step(self, step: int, loss: float, lr: float, images_per_s: float) -> None:
        writer = self._open()
        writer.add_scalar("train/loss", loss, step)
        writer.add_scalar("train/lr", lr, step)
        writer.add_scalar("train/images_per_s", images_per_s, step)

    def validation(self, epoch: int, values: dict[str, Any]) -> None:
        writer = self._open()
        for name, value in values.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                writer.add_scalar(f"val/{name}", value, epoch)
        writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


@dataclass
class Recorder:
    """Rank 0's writer of the run folder (the caller holds the folder's claim)."""

    run: RunDir
    run_id: str
    meta: RunMeta = field(default_factory=RunMeta)
    hooks: TrainHooks = field(default_factory=TrainHooks)
    on_event: EventHandler | None = None  # progress bars and messages

    def __post_init__(self) -> None:
        self.scalars = Scalars(self.run.tensorboard_dir)

    def resumed(self, position: Position) -> float:
        """Drop history past the checkpoint's position; the seconds trained before it."""
        return self.run.truncate_history(step=position.step, epoch=position.epoch)

    def start(self, cfg: TrainConfig, data: TrainData, *, device: torch.device, world_size: int, resume: bool) -> None:
        """The manifest (status running, this run's meta), config.toml, and a fresh history unless resuming."""
        from dmlbench.losses import LOSSES
        from dmlbench.models import BACKBONES
        from dmlbench.provenance import git_commit, versions
        from dmlbench.registry import module_plugin_versions

        run = self.run
        previous = run.read_manifest() if resume and run.exists() else None
        # A copy of each plugin file (and its sha256): report names the version, --resume refuses another.
        plugins = [run.write_plugin_copy(role, name, path, path.read_bytes()) for role, name, path in file_plugins(cfg)]
        meta = asdict(self.meta)
        run.write_manifest(
            Manifest(
                run_id=self.run_id,
                status="running",
                created=previous.created if previous is not None else now_iso(),
                versions=versions(),
                git_commit=git_commit(),
                device=str(device),
                world_size=world_size,
                threads=cfg.schedule.threads,
                dataset=DatasetRecord.from_prepared(data.prepared),
                val_classes=data.val_classes,
                last_step=previous.last_step if previous is not None else 0,
                last_epoch=previous.last_epoch if previous is not None else 0,
                plugins=plugins,
                module_plugins=module_plugin_versions([(LOSSES, cfg.loss.name), (BACKBONES, cfg.model.backbone or "")]),
                **meta,
            )
        )
        run.write_config(dump_toml(cfg))
        if not resume:
            run.start_history()
        self.log(("resumed " if resume else "started ") + json.dumps(config_to_dict(cfg), sort_keys=True))

    def event(self, event: Event) -> None:
        emit(self.on_event, event)

    def history(self, rows: list[dict[str, Any]]) -> None:
        self.run.append_history(rows)

    def log(self, message: str) -> None:
        logger.debug(message)
        self.run.log(message)

    def step(self, step: int, loss: float, lr: float, images_per_s: float) -> None:
        self.scalars.step(step, loss, lr, images_per_s)

    def validation(self, epoch: int, values: dict[str, Any]) -> None:
        self.scalars.validation(epoch, values)
        if self.hooks.on_validation is not None:
            self.hooks.on_validation(epoch, values)

    def checkpoint(self, state: TrainState, position: Position, best: dict[str, Any] | None) -> None:
        save_checkpoint(self.run.last_checkpoint, run_id=self.run_id, state=state, position=position, best=best)

    def best_weights(self, model: torch.nn.Module) -> None:
        export_weights(self.run.best_path, model)

    def last_loss(self) -> float | None:
        """The last loss in the history (a run resumed after its last step trains none)."""
        return self.run.read_history().last_loss()

    def complete(self, model: torch.nn.Module, position: Position, best: dict[str, Any] | None) -> None:
        """model.pt from the best validation weights (or the last), and the run marked complete."""
        use_best = best is not None and self.run.best_path.is_file()
        if use_best:
            with atomic_path(self.run.model_path) as tmp:
                shutil.copyfile(self.run.best_path, tmp)
        else:
            export_weights(self.run.model_path, model)
        self.finish("complete", None, position)
        self.log(f"complete: {position.step} steps, model.pt from {'best val' if use_best else 'last'} weights")

    def finish(self, status: Ending, error: str | None, position: Position) -> None:
        """The manifest's final status; a run that did not complete keeps history only up to its checkpoint."""
        if not self.run.exists():
            return
        if status != "complete":
            self.run.truncate_history(step=position.step, epoch=position.epoch)
        self.run.set_status(status, error=error, last_step=position.step, last_epoch=position.epoch)
        self.log(f"{status}" + (f": {error}" if error else ""))

    def close(self) -> None:
        self.scalars.close()


class NullRecorder(Recorder):
    """The recorder of ranks other than 0: writes nothing."""

    def __init__(self) -> None:  # no run folder: every method below is a no-op
        pass

    def resumed(self, position: Position) -> float:
        return 0.0

    def start(self, cfg: TrainConfig, data: TrainData, *, device: torch.device, world_size: int, resume: bool) -> None:
        pass

    def event(self, event: Event) -> None:
        pass

    def history(self, rows: list[dict[str, Any]]) -> None:
        pass

    def log(self, message: str) -> None:
        pass

    def step(self, step: int, loss: float, lr: float, images_per_s: float) -> None:
        pass

    def validation(self, epoch: int, values: dict[str, Any]) -> None:
        pass

    def checkpoint(self, state: TrainState, position: Position, best: dict[str, Any] | None) -> None:
        pass

    def best_weights(self, model: torch.nn.Module) -> None:
        pass

    def last_loss(self) -> float | None:
        return None

    def complete(self, model: torch.nn.Module, position: Position, best: dict[str, Any] | None) -> None:
        pass

    def finish(self, status: Ending, error: str | None, position: Position) -> None:
        pass

    def close(self) -> None:
        pass
