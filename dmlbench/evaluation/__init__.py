"""Core of `dmlbench evaluate`: exact retrieval and clustering metrics, memory-bounded, any backend.

Importing this package does not import torch or faiss; they load when a function needs them.
"""

from __future__ import annotations

from dmlbench.evaluation.baselines import run_baseline
from dmlbench.evaluation.core import EvalOptions, EvalOutcome, evaluate_embeddings
from dmlbench.evaluation.files import evaluate_files, load_embeddings
from dmlbench.evaluation.metrics import METRICS, MetricInfo, higher_is_better, metric_info
from dmlbench.evaluation.runner import EvalResult, evaluate
from dmlbench.evaluation.trained import load_trained_embedder

__all__ = [
    "METRICS",
    "EvalOptions",
    "EvalOutcome",
    "EvalResult",
    "MetricInfo",
    "evaluate",
    "evaluate_embeddings",
    "evaluate_files",
    "higher_is_better",
    "load_embeddings",
    "load_trained_embedder",
    "metric_info",
    "run_baseline",
]
