"""What a run watches besides its loss: validation on held-out training classes, and the best weights."""

from __future__ import annotations

from typing import Any

import torch

from dmlbench.config import TrainConfig
from dmlbench.errors import ConfigError
from dmlbench.training.data import TrainData
from dmlbench.training.recorder import Recorder


class Validator:
    """Every `validation.every` epochs: embed the held-out classes, score them, record the best weights.

    Rank 0's alone (the other ranks have none); `best` is checkpointed with the run.
    """

    def __init__(self, cfg: TrainConfig, data: TrainData, device: torch.device, recorder: Recorder) -> None:
        self.cfg, self.data, self.device, self.recorder = cfg, data, device, recorder
        self.best: dict[str, Any] | None = None  # {"epoch", "metric", "value"}

    def __call__(self, model: torch.nn.Module, epoch: int) -> dict[str, Any] | None:
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
            self.recorder.best_weights(model)
        return {k: float(v) for k, v in values.items()}
