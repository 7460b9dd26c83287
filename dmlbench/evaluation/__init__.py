"""Core of `dmlbench evaluate`: exact retrieval and clustering metrics, memory-bounded, any backend.

Importing this package does not import torch or faiss; they load when a function needs them.
"""

from __future__ import annotations

from dmlbench.evaluation.core import EvalOptions, EvalOutcome, evaluate_embeddings
from dmlbench.evaluation.metrics import METRICS, MetricInfo, higher_is_better, metric_info
from dmlbench.evaluation.runner import EvalResult, evaluate

__all__ = [
    "METRICS",
    "EvalOptions",
    "EvalOutcome",
    "EvalResult",
    "MetricInfo",
    "evaluate",
    "evaluate_embeddings",
    "higher_is_better",
    "metric_info",
]
