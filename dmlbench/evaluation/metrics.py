"""Pure metric functions over neighbour relevance tables and clusterings (numpy only).

Retrieval metrics read a boolean table `relevant[q, j]`: does the j-th nearest neighbour (0-based, the
query itself already removed, ties already ordered by gallery index) share query q's class? Every
function returns per-query values so the caller can average them over the non-lone queries only.
Definitions, with the protocol choices, are in docs/metrics.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from dmlbench.errors import UnknownNameError
from dmlbench.registry import did_you_mean

BoolTable = NDArray[np.bool_]
IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class MetricInfo:
    """One entry of the metric table: how to read the number, not how to compute it."""

    name: str
    higher_is_better: bool
    kind: Literal["retrieval", "clustering"]
    summary: str


METRICS: dict[str, MetricInfo] = {
    "recall": MetricInfo(
        "recall@K", True, "retrieval", "fraction of queries with >= 1 same-class item among their K nearest"
    ),
    "precision@1": MetricInfo(
        "precision@1", True, "retrieval", "fraction of queries whose nearest item shares its class"
    ),
    "r_precision": MetricInfo("r_precision", True, "retrieval", "precision among the R nearest, R = same-class count"),
    "map@r": MetricInfo("map@r", True, "retrieval", "mean average precision over the R nearest (Musgrave et al.)"),
    "nmi": MetricInfo("nmi", True, "clustering", "normalized mutual information of k-means clusters and labels"),
    "f1": MetricInfo("f1", True, "clustering", "pairwise F1 of k-means clusters against labels"),
}


def metric_info(key: str) -> MetricInfo:
    """Look up a metric by its result key (`recall@4` maps to the `recall` entry)."""
    base = "recall" if key.startswith("recall@") else key
    if base not in METRICS:
        known = list(METRICS)
        raise UnknownNameError(f"unknown metric {key!r}", hint=f"{did_you_mean(base, known)}known: {', '.join(known)}")
    return METRICS[base]


def higher_is_better(key: str) -> bool:
    """Whether a larger value of the metric `key` is better (all built-in metrics: yes)."""
    return metric_info(key).higher_is_better


def first_hit_rank(relevant: BoolTable) -> IntArray:
    """1-based rank of the first same-class neighbour per query; 0 when none is in the table."""
    any_hit = relevant.any(axis=1)
    first = relevant.argmax(axis=1).astype(np.int64) + 1
    return np.where(any_hit, first, 0).astype(np.int64)


def recall_at_k(first_hit: IntArray, k: int) -> NDArray[np.bool_]:
    """Per query: is there a same-class item within the k nearest? (from `first_hit_rank`)."""
    return (first_hit >= 1) & (first_hit <= k)


def precision_at_1(relevant: BoolTable) -> NDArray[np.bool_]:
    """Per query: does the nearest neighbour share the query's class?"""
    return relevant[:, 0].copy()


def r_precision(relevant: BoolTable, n_relevant: IntArray) -> FloatArray:
    """Per query: fraction of same-class items among the R nearest, R = `n_relevant` (nan where R = 0)."""
    r = n_relevant.astype(np.int64)
    columns = np.arange(relevant.shape[1])[None, :]
    within = columns < r[:, None]
    hits = (relevant & within).sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(r > 0, hits / np.maximum(r, 1), np.nan)


def map_at_r(relevant: BoolTable, n_relevant: IntArray) -> FloatArray:
    """Per query: (1/R) * sum over i <= R of P(i) * rel(i) (Musgrave et al. 2020); nan where R = 0."""
    r = n_relevant.astype(np.int64)
    columns = np.arange(relevant.shape[1])[None, :]
    within = columns < r[:, None]
    rel = relevant & within
    precision_at_i = np.cumsum(rel, axis=1) / (columns + 1.0)
    total = (precision_at_i * rel).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(r > 0, total / np.maximum(r, 1), np.nan)


def _dense(values: NDArray[np.generic]) -> tuple[IntArray, IntArray]:
    """Relabel to 0..m-1; return (codes, counts)."""
    _, codes, counts = np.unique(values, return_inverse=True, return_counts=True)
    return codes.reshape(-1).astype(np.int64), counts.astype(np.int64)


def _contingency_counts(labels: NDArray[np.generic], clusters: NDArray[np.generic]) -> tuple[IntArray, ...]:
    """Sparse contingency table: (label codes, cluster codes, joint counts, label sizes, cluster sizes)."""
    label_codes, label_sizes = _dense(labels)
    cluster_codes, cluster_sizes = _dense(clusters)
    n_clusters = int(cluster_sizes.shape[0])
    joint_keys, joint_counts = np.unique(label_codes * n_clusters + cluster_codes, return_counts=True)
    return joint_keys // n_clusters, joint_keys % n_clusters, joint_counts.astype(np.int64), label_sizes, cluster_sizes


def _entropy(sizes: IntArray) -> float:
    p = sizes.astype(np.float64) / float(sizes.sum())
    return float(-(p * np.log(p)).sum())


def nmi(labels: NDArray[np.generic], clusters: NDArray[np.generic]) -> float:
    """Normalized mutual information, I(Y;C) / mean(H(Y), H(C)) (sklearn's arithmetic normalisation)."""
    if labels.shape[0] != clusters.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels but {clusters.shape[0]} cluster ids")
    if labels.shape[0] == 0:
        return 1.0
    label_idx, cluster_idx, joint, label_sizes, cluster_sizes = _contingency_counts(labels, clusters)
    if label_sizes.shape[0] == cluster_sizes.shape[0] == 1:
        return 1.0  # both trivially a single group: identical partitions (sklearn's convention)
    n = float(labels.shape[0])
    joint_f = joint.astype(np.float64)
    outer = label_sizes[label_idx].astype(np.float64) * cluster_sizes[cluster_idx].astype(np.float64)
    mutual = float((joint_f / n * (np.log(joint_f) - np.log(outer) + np.log(n))).sum())
    mutual = max(mutual, 0.0)
    normaliser = max((_entropy(label_sizes) + _entropy(cluster_sizes)) / 2.0, float(np.finfo(np.float64).eps))
    return float(min(mutual / normaliser, 1.0))


def pairwise_f1(labels: NDArray[np.generic], clusters: NDArray[np.generic]) -> float:
    """F1 of pair decisions: a pair is predicted positive when both items share a cluster.

    Precision = same-class same-cluster pairs / same-cluster pairs, recall = the same over same-class pairs
    (Song et al. 2016). 0 when no pair is predicted or no pair is relevant.
    """
    if labels.shape[0] != clusters.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels but {clusters.shape[0]} cluster ids")
    _, _, joint, label_sizes, cluster_sizes = _contingency_counts(labels, clusters)

    def pairs(counts: IntArray) -> float:
        c = counts.astype(np.float64)
        return float((c * (c - 1.0) / 2.0).sum())

    true_pos, predicted, relevant = pairs(joint), pairs(cluster_sizes), pairs(label_sizes)
    if predicted == 0.0 or relevant == 0.0 or true_pos == 0.0:
        return 0.0
    precision, recall = true_pos / predicted, true_pos / relevant
    return 2.0 * precision * recall / (precision + recall)
