"""Pure metric functions over neighbour relevance tables, score rows and clusterings (numpy only).

Retrieval metrics read a boolean table `relevant[q, j]`: does the j-th nearest neighbour (0-based, the
query itself already removed, ties already ordered by gallery index) share query q's class? Every
function returns per-query values so the caller can average them over the non-lone queries only.
`r_metrics_from_scores` computes R-Precision and MAP@R from whole score rows instead, for classes so
large that a table of R neighbours per query would be too slow to build. Definitions, with the
protocol choices, are in docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from dmlbench.errors import UnknownNameError
from dmlbench.registry import did_you_mean

BoolTable = NDArray[np.bool_]
IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Hits:
    """What a retrieval metric reads for a tile of queries: the neighbour relevance table, each query's R
    (same-class items among its candidates), the rank of its first hit and, for recall@K, the K."""

    relevant: BoolTable
    n_relevant: IntArray
    first_hit: IntArray  # `first_hit_rank(relevant)`, computed once per tile whatever reads it
    k: int = 1


Needs = Literal["knn", "ranks", "clusters"]


@dataclass(frozen=True)
class MetricInfo:
    """One entry of the metric table: everything a caller needs to compute, show and compare a metric.

    `needs` names the table the metric is computed from, built once per evaluation whatever the number of
    metrics reading it: "knn" (the relevance table of the K nearest neighbours), "ranks" (the R nearest,
    R = same-class count: a neighbour list, or whole score rows when R is large) or "clusters" (k-means
    cluster ids against the labels). Retrieval metrics give `per_query` values (averaged over the non-lone
    queries, their 95% interval under a query sample from `interval`); clustering metrics `of_clusters`.
    """

    name: str
    label: str  # the short column label of reports; "{k}" is replaced by a cut-off's K
    higher_is_better: bool
    needs: Needs
    summary: str
    per_query: Callable[[Hits], FloatArray] | None = None
    of_clusters: Callable[[NDArray[Any], NDArray[Any]], float] | None = None
    value_range: tuple[float, float] = (0.0, 1.0)  # a stored value outside it is a broken measurement
    neighbours: int = 1  # columns of the kNN table a "knn" metric reads (recall@K reads K, whatever this says)
    interval: Literal["wilson", "bootstrap"] = "bootstrap"  # wilson: per-query values are 0/1

    @property
    def kind(self) -> Literal["retrieval", "clustering"]:
        return "clustering" if self.needs == "clusters" else "retrieval"


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


def _as_float(values: NDArray[np.bool_]) -> FloatArray:
    return values.astype(np.float64)


# The one table of metrics, in their canonical order (evaluation's output, `--metrics` help, reports).
# "recall" stands for every recall@K. A new metric is one entry here (and its function).
METRICS: dict[str, MetricInfo] = {
    "recall": MetricInfo(
        "recall@K",
        "R@{k}",
        True,
        "knn",
        "fraction of queries with >= 1 same-class item among their K nearest",
        per_query=lambda h: _as_float(recall_at_k(h.first_hit, h.k)),
        interval="wilson",
    ),
    "precision@1": MetricInfo(
        "precision@1",
        "P@1",
        True,
        "knn",
        "fraction of queries whose nearest item shares its class",
        per_query=lambda h: _as_float(precision_at_1(h.relevant)),
        interval="wilson",
    ),
    "r_precision": MetricInfo(
        "r_precision",
        "RP",
        True,
        "ranks",
        "precision among the R nearest, R = same-class count",
        per_query=lambda h: r_precision(h.relevant, h.n_relevant),
    ),
    "map@r": MetricInfo(
        "map@r",
        "MAP@R",
        True,
        "ranks",
        "mean average precision over the R nearest (Musgrave et al.)",
        per_query=lambda h: map_at_r(h.relevant, h.n_relevant),
    ),
    "nmi": MetricInfo(
        "nmi",
        "NMI",
        True,
        "clusters",
        "normalized mutual information of k-means clusters and labels",
        of_clusters=lambda labels, clusters: nmi(labels, clusters),
    ),
    "f1": MetricInfo(
        "f1",
        "F1",
        True,
        "clusters",
        "pairwise F1 of k-means clusters against labels",
        of_clusters=lambda labels, clusters: pairwise_f1(labels, clusters),
    ),
}


def base_key(key: str) -> str:
    """The table entry of a result key: `recall@4` -> `recall`."""
    return "recall" if key.startswith("recall@") else key


def metric_info(key: str) -> MetricInfo:
    """Look up a metric by its result key (`recall@4` maps to the `recall` entry)."""
    base = base_key(key)
    if base not in METRICS:
        known = list(METRICS)
        raise UnknownNameError(f"unknown metric {key!r}", hint=f"{did_you_mean(base, known)}known: {', '.join(known)}")
    return METRICS[base]


def known_metric(key: str) -> MetricInfo | None:
    """The table entry of a result key, or None for a name the table does not hold (a foreign metrics file)."""
    return METRICS.get(base_key(key))


def higher_is_better(key: str) -> bool:
    """Whether a larger value of the metric `key` is better (read from the table)."""
    return metric_info(key).higher_is_better


def metric_label(key: str) -> str:
    """Short column label in the paper's style: recall@4 -> R@4, nmi -> NMI; an unknown key as it is."""
    info = known_metric(key)
    if info is None:
        return key
    return info.label.replace("{k}", key.split("@", 1)[1]) if "{k}" in info.label else info.label


def direction_note(keys: Iterable[str]) -> str:
    """How a reader compares values of these metrics, from the table: which ones are lower-is-better."""
    lower = [metric_label(key) for key in keys if (info := known_metric(key)) is not None and not info.higher_is_better]
    if not lower:
        return "every metric is higher-is-better"
    return f"lower is better for {', '.join(lower)}, higher for every other metric"


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


def harmonic_table(n: int) -> FloatArray:
    """H[i] = 1 + 1/2 + ... + 1/i for i = 0..n (H[0] = 0), as `r_metrics_from_scores` uses it."""
    table = np.zeros(n + 1, dtype=np.float64)
    table[1:] = np.cumsum(1.0 / np.arange(1, n + 1, dtype=np.float64))
    return table


_SAMPLE_COLUMNS = 4096  # columns per row used to guess where the top R ends
_COARSE_BINS = 1024
# fine buckets per kept item: more leaves fewer buckets mixing both kinds (to sort) but larger count
# tables; 2 measured fastest (1 and 4 were 10-50% slower on 35,000 x 7,000-per-class rows)
_BUCKETS_PER_ITEM = 2
_MAX_BUCKETS = 1 << 17  # bounds the count tables when a row keeps every item


def _top_threshold(scores: NDArray[np.float32], r: IntArray) -> NDArray[np.float32]:
    """Per row, a score that most likely lies below the R-th best (from a strided column sample).

    Only a guess: the caller counts the items at or above it and widens rows where it was too high.
    """
    rows, width = scores.shape
    stride = max(1, width // _SAMPLE_COLUMNS)
    sample = scores[:, ::stride]
    lo = sample.min(axis=1).astype(np.float64)
    span = sample.max(axis=1).astype(np.float64) - lo
    scale = np.where(span > 0, (_COARSE_BINS - 1) / np.where(span > 0, span, 1.0), 0.0)
    coarse = np.clip((sample - lo[:, None]) * scale[:, None], 0, _COARSE_BINS - 1).astype(np.int64)
    coarse += (np.arange(rows, dtype=np.int64) * _COARSE_BINS)[:, None]
    hist = np.bincount(coarse.ravel(), minlength=rows * _COARSE_BINS).reshape(rows, _COARSE_BINS)
    from_top = np.cumsum(hist[:, ::-1], axis=1)
    expected = (r + 1) / stride  # sampled items at or above the R-th best, on average
    wanted = np.minimum(np.ceil(expected + 4.0 * np.sqrt(expected) + 2.0), sample.shape[1])
    top_bin = _COARSE_BINS - 1 - np.argmax(from_top >= wanted[:, None], axis=1)
    edge = np.where(scale > 0, lo + (top_bin - 1) / np.where(scale > 0, scale, 1.0), -np.inf)
    return edge.astype(np.float32)


def _descending_key(values: NDArray[np.float32]) -> IntArray:
    """Integers in [0, 2**32) whose ascending order is the descending order of the float32 values."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.int64)
    ascending = np.where(bits >= 1 << 31, (1 << 32) - 1 - bits, bits + (1 << 31))
    return (1 << 32) - 1 - ascending


def _neighbour_order(
    bucket: IntArray, score: NDArray[np.float32], own: IntArray, buckets: int
) -> tuple[IntArray, IntArray, IntArray]:
    """(row, bucket, own) of items ordered by bucket, then score descending, then index ascending.

    The inputs come in index order within each row. Sorting one packed integer is much faster than a
    stable argsort, but it orders an exact tie by kind instead of by index; that matters only in a
    tie holding both kinds (float32 scores do collide), so those few runs get their kinds re-read in
    index order.
    """
    key = _descending_key(score)
    if int(bucket.max(initial=0)) >= 1 << 30:  # no room to pack: plain stable sort
        order = np.argsort(bucket * (1 << 32) + key, kind="stable")
        b = bucket[order]
        return b // buckets, b, own[order]
    tie_key = (bucket << 32) | key
    packed = np.sort((tie_key << 1) | own)
    sorted_tie = packed >> 1
    own_sorted = packed & 1
    mixed_tie = (sorted_tie[1:] == sorted_tie[:-1]) & (own_sorted[1:] != own_sorted[:-1])
    if mixed_tie.any():
        bad = np.unique(sorted_tie[1:][mixed_tie])
        members = np.flatnonzero(np.isin(tie_key, bad))  # index order within each run
        members = members[np.argsort(tie_key[members], kind="stable")]
        own_sorted[np.isin(sorted_tie, bad)] = own[members]
    b = sorted_tie >> 32
    return b // buckets, b, own_sorted


def r_metrics_from_scores(
    scores: NDArray[np.float32],
    query_labels: IntArray,
    gallery_labels: IntArray,
    n_relevant: IntArray,
    self_cols: IntArray | None = None,
    harmonic: FloatArray | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Per query (R-Precision, MAP@R) straight from whole score rows, without a neighbour list.

    `scores[q, j]` is higher when gallery item j is closer to query q; `self_cols[q]` is a column to
    leave out (the query itself); `n_relevant[q]` is R, the number of other columns of q's class.
    The neighbour order is the one `search.iter_neighbours` yields (score descending, index
    ascending), so the values equal `r_precision`/`map_at_r` over that list, up to float rounding
    of the sums (`harmonic` may pass a precomputed `harmonic_table(scores.shape[1])`).

    Sorting rows of tens of thousands of items costs far more than the scores, so: items below a
    sampled guess of the R-th best score are dropped (they rank after R and do not move the ranks
    above them; rows where the guess was too high keep every item), and the rest are counted into
    fine score buckets. The bucket map is monotone, so exact ties share a bucket and everything in a
    better bucket ranks first. A same-class item after m same-class and o other items has rank
    m + o and MAP@R term (m + 1)/(m + o + 1); in a bucket of only same-class items the order inside
    does not change the sums, so a run of h of them starting at rank k adds h - o * (H[k + h] - H[k])
    (harmonic numbers H). Only buckets mixing both kinds within the top R are sorted exactly.
    """
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    rows, width = scores.shape
    r = n_relevant.astype(np.int64)
    harmonic = harmonic_table(width) if harmonic is None else harmonic
    row_ids = np.arange(rows, dtype=np.int64)
    lo = _top_threshold(scores, r)
    flat = ~np.isfinite(lo)  # a constant sample: no guess
    if flat.any():
        lo[flat] = scores[flat].min(axis=1)
    keep = scores >= lo[:, None]
    if self_cols is not None:
        keep[row_ids, self_cols] = False
    short = keep.sum(axis=1) < r
    if short.any():
        keep[short] = True
        lo[short] = scores[short].min(axis=1)
        if self_cols is not None:
            keep[row_ids[short], self_cols[short]] = False
    keep[r == 0] = False
    flat_index = np.flatnonzero(keep)  # far faster than a 2-D nonzero
    del keep
    qi = flat_index // width
    gj = flat_index - qi * width
    s = scores.reshape(-1)[flat_index] + np.float32(0.0)  # -0.0 -> 0.0: they tie, as floats do
    del flat_index
    own_item = (gallery_labels[gj] == query_labels[qi]).astype(np.int64)
    count = np.bincount(qi, minlength=rows)

    buckets = int(min(max(int(_BUCKETS_PER_ITEM * int(count.max(initial=0))), 2), _MAX_BUCKETS))
    lo64 = lo.astype(np.float64)
    hi = np.zeros(rows, dtype=np.float64)
    filled = count > 0
    if filled.any():  # the query itself (often far ahead of the rest) would waste the bucket range
        hi[filled] = np.maximum.reduceat(s, (np.cumsum(count) - count)[filled])
    span = hi - lo64
    scale = np.where(span > 0, (buckets - 1) / np.where(span > 0, span, 1.0), 0.0)
    # monotone in s (rounding is monotone), so a better bucket never holds a worse score
    fine = np.clip((s - np.repeat(lo64, count)) * np.repeat(scale, count), 0, buckets - 1).astype(np.int64)
    bucket = qi * buckets + fine
    del fine
    size = rows * buckets
    everything = np.bincount(bucket, minlength=size)
    own = np.bincount(bucket[own_item == 1], minlength=size)
    # items in strictly better (higher) buckets of the same row
    all_before = (count[:, None] - np.cumsum(everything.reshape(rows, buckets), axis=1)).ravel()
    own_table = own.reshape(rows, buckets)
    own_before = (own_table.sum(axis=1, keepdims=True) - np.cumsum(own_table, axis=1)).ravel()
    live = (own > 0) & (all_before < np.repeat(r, buckets))
    hits = np.zeros(rows, dtype=np.float64)
    total = np.zeros(rows, dtype=np.float64)

    pure = np.flatnonzero(live & (everything == own))
    if pure.size:
        row = pure // buckets
        first = all_before[pure]
        h = np.minimum(own[pure], r[row] - first)
        gain = h - (first - own_before[pure]) * (harmonic[first + h] - harmonic[first])
        hits += np.bincount(row, weights=h, minlength=rows)
        total += np.bincount(row, weights=gain, minlength=rows)

    mixed = live & (everything > own)
    pick = np.flatnonzero(mixed[bucket]) if mixed.any() else np.zeros(0, dtype=np.int64)
    if pick.size:
        q_m, b_m, own_m = _neighbour_order(bucket[pick], s[pick], own_item[pick], buckets)
        new_group = np.ones(b_m.size, dtype=bool)
        new_group[1:] = b_m[1:] != b_m[:-1]
        group_first = np.flatnonzero(new_group)[np.cumsum(new_group) - 1]
        own_cum = np.cumsum(own_m) - own_m
        all_cum = np.arange(b_m.size, dtype=np.int64)
        m = own_before[b_m] + own_cum - own_cum[group_first]
        rank = all_before[b_m] + all_cum - all_cum[group_first]
        take = (own_m == 1) & (rank < r[q_m])
        hits += np.bincount(q_m[take], minlength=rows)
        total += np.bincount(q_m[take], weights=(m[take] + 1.0) / (rank[take] + 1.0), minlength=rows)

    with np.errstate(invalid="ignore", divide="ignore"):
        rprec = np.where(r > 0, hits / np.maximum(r, 1), np.nan)
        mapr = np.where(r > 0, total / np.maximum(r, 1), np.nan)
    return rprec, mapr
