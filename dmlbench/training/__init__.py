"""Core of `dmlbench train`: `train(cfg, run_dir, ...) -> TrainSummary`."""

from __future__ import annotations

from dmlbench.training.distributed import DistContext
from dmlbench.training.loop import TrainingDivergedError
from dmlbench.training.run import TrainHooks, TrainSummary, train

__all__ = ["DistContext", "TrainHooks", "TrainSummary", "TrainingDivergedError", "train"]
