"""What a run watches besides its loss: validation on held-out training classes, TensorBoard scalars, and
the margin schedule (γ decay) that depends on the position alone."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dmlbench.config import TrainConfig
from dmlbench.errors import ConfigError
from dmlbench.training.checkpoint import Position, export_weights
from dmlbench.training.data import TrainData


class Validator:
    """Every `validation.every` epochs: embed the held-out classes, score them, keep the best weights."""

    def __init__(self, cfg: TrainConfig, data: TrainData, device: torch.device) -> None:
        self.cfg, self.data, self.device = cfg, data, device
        self.best: dict[str, Any] | None = None  # {"epoch", "metric", "value"}; checkpointed with the run

    def __call__(self, model: torch.nn.Module, epoch: int, *, best_path: Path) -> dict[str, Any] | None:
        cfg = self.cfg.validation
        if len(self.data.val_frame) == 0 or epoch % cfg.every:
            return None
        from dmlbench.datasets.torch_data import dataset_for_model
        from dmlbench.evaluation import EvalOptions, evaluate_embeddings
        from dmlbench.evaluation.embed import embed_dataset
        from dmlbench.evaluation.metrics import higher_is_better

        dataset = dataset_for_model(self.data.prepared, self.data.val_frame, self.cfg.model)
        was_training = model.training
        embeddings, labels = embed_dataset(
            model, dataset, device=self.device, task="validate", num_workers=self.cfg.schedule.num_workers
        )
        model.train(was_training)
        options = EvalOptions(metrics=tuple(sorted({cfg.metric, "recall@1"})), device="cpu", seed=self.cfg.seed)
        values = evaluate_embeddings(embeddings, labels, options).metrics
        if cfg.metric not in values:
            raise ConfigError(f"validation.metric {cfg.metric!r} is not a metric", hint=f"use one of {sorted(values)}")
        value = float(values[cfg.metric])
        best = self.best
        better = best is None or (value > best["value"] if higher_is_better(cfg.metric) else value < best["value"])
        if better:
            self.best = {"epoch": epoch, "metric": cfg.metric, "value": value}
            export_weights(best_path, model)
        return {k: float(v) for k, v in values.items()}


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


def margin_schedule(cfg: TrainConfig, loss_fn: torch.nn.Module) -> Callable[[Position], None] | None:
    """γ_s = γ0 x decay^(s // every) (or per finished epoch); computed from the position, so a resumed run
    continues exactly where it stopped."""
    decay = cfg.loss.margin_decay
    if decay is None or decay == 1.0:
        return None
    if not hasattr(loss_fn, "margin_multiplier"):
        raise ConfigError(
            f"loss {cfg.loss.name!r} has no margin multiplier to decay", hint="drop loss.margin_decay for this loss"
        )
    initial = float(getattr(loss_fn, "margin_multiplier"))  # noqa: B009 - a Module attribute mypy cannot see
    every = cfg.loss.margin_decay_every

    def apply(position: Position) -> None:
        periods = position.step // every if every else position.epoch
        setattr(loss_fn, "margin_multiplier", initial * decay**periods)  # noqa: B010

    return apply
