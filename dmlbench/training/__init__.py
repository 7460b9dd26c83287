"""Core of `dmlbench train`: `train(cfg, run_dir, *, places, ...) -> TrainSummary`."""

from __future__ import annotations

from dmlbench.training.distributed import DistContext
from dmlbench.training.loop import TrainingDivergedError
from dmlbench.training.recorder import RunMeta, TrainHooks
from dmlbench.training.run import TrainSummary, train

__all__ = ["DistContext", "RunMeta", "TrainHooks", "TrainSummary", "TrainingDivergedError", "train"]
