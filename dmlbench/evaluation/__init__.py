"""Core of `dmlbench evaluate`: exact retrieval and clustering metrics, memory-bounded, any backend.

Importing this package does not import torch or faiss; they load when a function needs them.
"""

from __future__ import annotations

from dmlbench.evaluation.core import EvalOutcome, evaluate_embeddings, evaluate_embeddings_detailed
from dmlbench.evaluation.metrics import METRICS, MetricInfo, higher_is_better, metric_info
from dmlbench.evaluation.runner import EvalResult, evaluate

__all__ = [
    "METRICS",
    "EvalOutcome",
    "EvalResult",
    "MetricInfo",
    "evaluate",
    "evaluate_embeddings",
    "evaluate_embeddings_detailed",
    "higher_is_better",
    "metric_info",
]
