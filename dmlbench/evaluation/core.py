"""Score embeddings: validation, protocol, tiled kNN + per-query metric reduction, k-means metrics."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

import dmlbench.evaluation.metrics as M
from dmlbench.errors import UsageError
from dmlbench.evaluation.ann import ApproximateBackend, agreement, parse_index, recall_bounds
from dmlbench.evaluation.clustering import DEFAULT_NITER, kmeans_faiss, kmeans_torch
from dmlbench.evaluation.sampling import (
    BOOTSTRAP_RESAMPLES,
    bootstrap_mean_interval,
    query_sample,
    stratified_sample,
    wilson_interval,
)
from dmlbench.evaluation.search import (
    BackendChoice,
    BackendName,
    Distance,
    SearchBackend,
    build_backend,
    choose_backend,
    iter_neighbours,
)
from dmlbench.events import Event, EventHandler, emit
from dmlbench.rundir import SPLITS

DEFAULT_RECALL_K = (1, 2, 4, 8)
RETRIEVAL_SAMPLE = 12  # queries a run folder's retrieval.json keeps: 6 worst, 6 drawn at random
PROTOCOL_SELF = "query=gallery, self excluded by index"
PROTOCOL_SPLIT = "query vs gallery"
# Above this largest R, R-Precision and MAP@R come from ranks over whole score rows instead of a k-NN
# list of R neighbours: faiss's heap search slows sharply with k (k ~ 7,000 on 35,000 items: minutes).
# Measured on 35,000 gallery items, 64-d: both cost the same near R = 2,000, the list wins below.
LARGE_R_MIN = 2048
# The rank metrics `_r_metrics_by_rank` computes from whole score rows, in the order it returns them; a new
# "ranks" metric of the table needs a score-row form there too, or it cannot be scored past LARGE_R_MIN.
BY_RANK = ("r_precision", "map@r")
_RANK_TILE_ELEMENTS = 1 << 20  # scores ranked at once (4 MB; larger tiles measured slower)
_SCORE_BLOCK_ELEMENTS = 1 << 24  # scores computed at once on the rank path (64 MB)
# Above this many k-means multiply-adds (items x classes x dim x iterations x restarts), k-means runs on a
# class-stratified sample sized to fit it. Stanford Online Products (2.1e12) stays whole; 1M items of
# 10,000 classes (3.2e13, tens of minutes on 2 cores) get a 125,000-item sample.
KMEANS_AUTO_BUDGET = 4e12
SAMPLE_INTERVALS = (
    "95%: Wilson score interval (Recall@K, P@1); percentile bootstrap of the mean, "
    f"{BOOTSTRAP_RESAMPLES} resamples (R-Precision, MAP@R)"
)


@dataclass(frozen=True)
class EvalOutcome:
    """Metrics plus what a reader needs to interpret them."""

    metrics: dict[str, float]
    lone_queries: int
    n_queries: int
    n_gallery: int
    backend: str
    seconds: float
    embedding_dim: int = 0
    distance: str = "cosine"
    protocol: str = PROTOCOL_SELF
    recall_k: list[int] = field(default_factory=list)
    # 95% intervals of metrics estimated from a query sample, and what was not exact (empty: all exact)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    approximation: dict[str, Any] = field(default_factory=dict)
    retrieval: RetrievalSample | None = None


@dataclass(frozen=True)
class RetrievalSample:
    """Queries picked to be looked at: the worst first (most wrong neighbours), then a seeded random draw.

    Indices are rows of the query and gallery arrays (the same array under query=gallery).
    """

    queries: list[int]
    kinds: list[str]  # "worst" or "random", per query
    neighbours: list[list[int]]  # gallery rows, nearest first
    correct: list[list[bool]]  # whether each neighbour shares the query's class


def as_matrix(values: Any, what: str) -> NDArray[np.float32]:
    """A finite float32 [N, D] array from numpy/torch/list input, or a UsageError."""
    if hasattr(values, "detach"):
        values = values.detach().cpu()
        if values.is_floating_point():  # numpy has no bfloat16; float32 is the target dtype anyway
            values = values.float()
        values = values.numpy()
    array = np.asarray(values)
    if array.ndim != 2:
        raise UsageError(
            f"{what} must be a 2-D array [N, D], got shape {tuple(array.shape)}",
            hint="pass one row per item (reshape or stack the vectors first)",
        )
    if array.shape[0] == 0:
        raise UsageError(f"{what} is empty (0 rows)", hint="check that the split holds images")
    if array.shape[1] == 0:
        raise UsageError(f"{what} has dimension 0", hint="embeddings need at least one column")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise UsageError(f"{what} has dtype {array.dtype}, not real numbers", hint="pass float embeddings")
    matrix = np.ascontiguousarray(array, dtype=np.float32)
    bad = ~np.isfinite(matrix)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise UsageError(
            f"{what} contains NaN or inf in {rows.size} row(s) (first: row {int(rows[0])})",
            hint="the model diverged or the file is corrupt; re-export the embeddings",
        )
    return matrix


def as_labels(values: Any, n: int, what: str) -> NDArray[np.int64]:
    """Integer labels [N] matching `n` rows, or a UsageError."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim == 2 and 1 in array.shape:
        array = array.reshape(-1)
    if array.ndim != 1:
        raise UsageError(f"{what} must be 1-D, got shape {tuple(array.shape)}", hint="pass one integer per row")
    if array.shape[0] != n:
        raise UsageError(
            f"{what} has {array.shape[0]} entries but there are {n} embedding rows",
            hint="embeddings and labels must come from the same items, in the same order",
        )
    integral_floats = array.dtype.kind == "f" and np.all(np.isfinite(array)) and np.all(array == np.round(array))
    if array.dtype.kind not in "iub" and not integral_floats:
        raise UsageError(f"{what} has dtype {array.dtype}, not integers", hint="pass integer class ids")
    return array.astype(np.int64, copy=False)


def _normalise(x: NDArray[np.float32], what: str) -> NDArray[np.float32]:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    zero_rows = int(np.count_nonzero(norms == 0))
    if zero_rows:
        raise UsageError(
            f"{what} has {zero_rows} all-zero row(s): cosine similarity is undefined",
            hint="use --distance euclidean, or fix the model output",
        )
    normalised: NDArray[np.float32] = (x / norms).astype(np.float32, copy=False)
    return normalised


def _groups(
    query_groups: Any, gallery_groups: Any, n_queries: int, n_gallery: int, separate: bool
) -> tuple[NDArray[np.int64], NDArray[np.int64]] | None:
    """(query groups, gallery groups) as integer arrays, or None when no exclusion groups were given."""
    if query_groups is None and gallery_groups is None:
        return None
    if query_groups is None or (separate and gallery_groups is None):
        raise UsageError("exclusion groups need one array for the queries and one for the gallery", hint="pass both")
    if not separate and gallery_groups is not None:
        raise UsageError("without a gallery, pass query_groups only", hint="the queries are the gallery")
    query = as_labels(query_groups, n_queries, "query groups")
    gallery = as_labels(gallery_groups, n_gallery, "gallery groups") if separate else query
    return query, gallery


def _pair_counts(
    query_labels: NDArray[np.int64],
    query_groups: NDArray[np.int64],
    gallery_labels: NDArray[np.int64],
    gallery_groups: NDArray[np.int64],
) -> NDArray[np.int64]:
    """Per query: how many gallery items share both its label and its group."""
    n_gallery = gallery_labels.shape[0]
    _, label_code = np.unique(np.concatenate([gallery_labels, query_labels]), return_inverse=True)
    group_values, group_code = np.unique(np.concatenate([gallery_groups, query_groups]), return_inverse=True)
    key = label_code.astype(np.int64) * len(group_values) + group_code
    keys, counts = np.unique(key[:n_gallery], return_counts=True)
    wanted = key[n_gallery:]
    pos = np.clip(np.searchsorted(keys, wanted), 0, max(keys.size - 1, 0))
    return np.where(keys[pos] == wanted, counts[pos], 0).astype(np.int64)


def _drop_groups(
    indices: NDArray[np.int64], query_groups: NDArray[np.int64], gallery_groups: NDArray[np.int64], k: int
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Each row's neighbours minus those of the query's own group, order kept, cut to k columns; the mask
    says which columns are real neighbours (a row whose candidates run out is padded with dropped ones)."""
    kept = gallery_groups[indices] != query_groups[:, None]
    order = np.argsort(~kept, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(indices, order, axis=1), np.take_along_axis(kept, order, axis=1)


def _select(metrics: Iterable[str] | None, recall_k: Sequence[int]) -> tuple[list[int], list[str]]:
    """Expand metric names into (recall cut-offs, other metric keys in canonical order)."""
    ks = sorted({int(k) for k in recall_k})
    if any(k < 1 for k in ks):
        raise UsageError(f"recall@K needs K >= 1, got {ks}", hint="e.g. --recall-k 1,2,4,8")
    if metrics is None:
        return ks, [key for key in M.METRICS if key != "recall"]
    wanted_k: set[int] = set()
    others: set[str] = set()
    for name in metrics:
        key = name.strip().lower()
        if key.startswith("recall@"):
            try:
                wanted_k.add(int(key.split("@", 1)[1]))
            except ValueError:
                raise UsageError(f"bad metric {name!r}", hint="write recall@K with an integer K") from None
            continue
        M.metric_info(key)  # unknown names fail here, with did-you-mean
        if key == "recall":
            wanted_k.update(ks)
        else:
            others.add(key)
    if any(k < 1 for k in wanted_k):
        raise UsageError(f"recall@K needs K >= 1, got {sorted(wanted_k)}", hint="e.g. recall@1")
    if not wanted_k and not others:
        raise UsageError("no metric was selected", hint=f"choose among: {', '.join(M.METRICS)}")
    return sorted(wanted_k), [key for key in M.METRICS if key in others]


def _r_metrics_by_rank(
    engine: SearchBackend,
    queries: NDArray[np.float32],
    query_labels: NDArray[np.int64],
    gallery_labels: NDArray[np.int64],
    n_relevant: NDArray[np.int64],
    *,
    exclude_self: bool,
    on_event: EventHandler | None,
    query_ids: NDArray[np.int64] | None = None,
    groups: tuple[NDArray[np.int64], NDArray[np.int64]] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-query (R-Precision, MAP@R) from whole score rows, a few queries at a time (large R).

    With `exclude_self`, query i is gallery column i, or `query_ids[i]` when the queries are a sample.
    `groups` (these queries' groups, the gallery's) push each query's same-group items below every other
    score: R counts none of them, so they never reach the top R.
    """
    n = queries.shape[0]
    rprec = np.full(n, np.nan)
    mapr = np.full(n, np.nan)
    harmonic = M.harmonic_table(engine.size)
    tile = max(1, min(32, _RANK_TILE_ELEMENTS // max(engine.size, 1)))
    block = tile * max(1, _SCORE_BLOCK_ELEMENTS // (tile * max(engine.size, 1)))
    task = "rank R-precision/MAP@R"
    emit(on_event, Event("start", task, total=float(n), unit="queries"))
    for first in range(0, n, block):
        # few large matmuls: many small ones leave BLAS threads spinning between calls
        scores = engine.score_rows(queries[first : first + block])
        if groups is not None:
            same = groups[0][first : first + scores.shape[0], None] == groups[1][None, :]
            scores = np.where(same, scores.min() - 1.0, scores).astype(np.float32)
        for start in range(first, first + scores.shape[0], tile):
            stop = min(start + tile, first + scores.shape[0])
            rprec[start:stop], mapr[start:stop] = M.r_metrics_from_scores(
                scores[start - first : stop - first],
                query_labels[start:stop],
                gallery_labels,
                n_relevant[start:stop],
                (query_ids[start:stop] if query_ids is not None else np.arange(start, stop, dtype=np.int64))
                if exclude_self
                else None,
                harmonic,
            )
        emit(on_event, Event("advance", task, amount=float(scores.shape[0])))
    emit(on_event, Event("finish", task))
    return rprec, mapr


@dataclass(frozen=True)
class EvalOptions:
    """Every knob of an evaluation, in one validated value (a bad one is a UsageError on construction).

    Scoring embeddings (`evaluate_embeddings`, `evaluate_files`) reads the scoring fields; evaluating a run
    folder (`evaluate`, baselines) reads all of them. `metrics=None` computes every metric; a subset names
    `recall` (all K), `recall@K` or any metric key. `recall_k=None`: the dataset's K for a run folder,
    else 1,2,4,8. `retrieval_sample=None`: 12 queries for a run folder's retrieval.json, none otherwise.
    A run folder is scored with the run's own seed.
    """

    recall_k: Sequence[int] | None = None
    metrics: Sequence[str] | None = None
    device: str = "auto"
    distance: Distance = "cosine"
    kmeans_niter: int = DEFAULT_NITER
    kmeans_nredo: int = 1
    seed: int = 0
    backend: BackendName = "auto"
    tile_size: int = 2048
    # Beyond exact search (docs/metrics.md): a seeded query sample, an approximate index and the sample
    # its agreement with exact search is measured on, a k-means sample (None: automatic above a cost).
    queries: int | None = None
    index: str = "flat"
    agreement_queries: int = 1000
    cluster_sample: int | None = None
    # Queries whose neighbours are kept for a retrieval grid (half worst, half random), and how many each.
    retrieval_sample: int | None = None
    retrieval_k: int = 8
    # A run folder only: the split embedded, whether its embeddings are kept, images per embedding batch.
    split: str = "test"
    save_embeddings: bool = False
    batch_size: int = 256

    def __post_init__(self) -> None:
        check_options(self)

    @property
    def ks(self) -> Sequence[int]:
        """The recall cut-offs asked for, the default ones when none were."""
        return DEFAULT_RECALL_K if self.recall_k is None else self.recall_k


def with_overrides(options: EvalOptions | None, overrides: dict[str, Any]) -> EvalOptions:
    """`options` (default EvalOptions()) with some fields replaced; an unknown field is a UsageError."""
    import dataclasses

    try:
        return dataclasses.replace(options or EvalOptions(), **overrides)
    except TypeError:
        known = [f.name for f in dataclasses.fields(EvalOptions)]
        raise UsageError(
            f"unknown evaluation option(s) {sorted(set(overrides) - set(known))}", hint=f"options: {', '.join(known)}"
        ) from None


def check_options(options: EvalOptions) -> None:
    """Reject a bad distance, k-means setting, split or metric selection (UsageError) before any work is done.

    EvalOptions runs it on construction, so an options value that exists is a valid one.
    """
    if options.distance not in ("cosine", "euclidean"):
        raise UsageError(f"unknown distance {options.distance!r}", hint="use cosine or euclidean")
    from dmlbench.config import MAX_COUNT, MAX_SEED

    # faiss takes niter, nredo and seed as C ints: a bigger value is an OverflowError traceback deep inside.
    if not (1 <= options.kmeans_niter <= MAX_COUNT and 1 <= options.kmeans_nredo <= MAX_COUNT):
        raise UsageError(
            f"k-means needs niter >= 1 and nredo >= 1, each at most {MAX_COUNT}",
            hint="e.g. kmeans_niter=25, kmeans_nredo=1",
        )
    if not 0 <= options.seed <= MAX_SEED:
        raise UsageError(f"seed must be in 0..{MAX_SEED}, got {options.seed}", hint="e.g. --seed 0")
    if options.tile_size < 1:
        raise UsageError(f"tile_size must be >= 1, got {options.tile_size}", hint="e.g. tile_size=2048")
    if options.queries is not None and options.queries < 1:
        raise UsageError(f"--queries must be >= 1, got {options.queries}", hint="e.g. --queries 10000")
    if options.agreement_queries < 1:
        raise UsageError(
            f"--agreement-queries must be >= 1, got {options.agreement_queries}", hint="e.g. --agreement-queries 1000"
        )
    if options.cluster_sample is not None and options.cluster_sample < 0:
        raise UsageError(
            f"--cluster-sample must be >= 0, got {options.cluster_sample}",
            hint="a sample size such as 50000, or 0 for k-means on every item",
        )
    if (options.retrieval_sample or 0) < 0 or options.retrieval_k < 1:
        raise UsageError("a retrieval sample needs >= 0 queries and k >= 1", hint="e.g. retrieval_sample=16")
    if options.split not in SPLITS:
        raise UsageError(f"unknown split {options.split!r}", hint=f"use one of {', '.join(SPLITS)}")
    if options.batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {options.batch_size}", hint="e.g. batch_size=256")
    spec = parse_index(options.index)
    ks, others = _select(options.metrics, options.ks)
    retrieval = bool(ks) or any(M.METRICS[key].kind == "retrieval" for key in others)
    if not retrieval and (options.queries is not None or not spec.exact):
        flag = "--queries" if options.queries is not None else "--index"
        raise UsageError(
            f"{flag} applies to retrieval metrics, and none is selected", hint="add e.g. --metrics recall,map@r"
        )


def evaluate_embeddings(
    embeddings: Any,
    labels: Any,
    options: EvalOptions | None = None,
    *,
    gallery_embeddings: Any = None,
    gallery_labels: Any = None,
    on_event: EventHandler | None = None,
    query_groups: Any = None,
    gallery_groups: Any = None,
    **overrides: Any,
) -> EvalOutcome:
    """Score embeddings: metric values (`recall@K`, `precision@1`, `r_precision`, `map@r`, `nmi`, `f1`),
    lone-query count, sizes, protocol, backend and time.

    `overrides` are EvalOptions fields replacing those of `options` (`evaluate_embeddings(x, y, metrics=["nmi"])`).
    Without a gallery, every item queries all others (itself excluded by index). With one, queries
    search the gallery only. Lone queries (no same-class item among the candidates) are counted and
    left out of every retrieval metric. Clustering metrics use the query embeddings.
    `query_groups`/`gallery_groups` (integers, one per row; without a gallery, `query_groups` alone) make
    items of one group never each other's neighbours (open-metric-learning's sequences): they are
    neither candidates nor counted in R.
    """
    opts = with_overrides(options, overrides)
    started = time.perf_counter()
    queries, query_labels, gallery, gallery_ids = _inputs(
        embeddings, labels, gallery_embeddings, gallery_labels, opts.distance
    )
    separate = gallery_embeddings is not None
    n_classes = int(np.unique(query_labels).size)
    ks, others = _select(opts.metrics, opts.ks)
    needs = {key: M.METRICS[key].needs for key in others}

    values: dict[str, float] = {}
    intervals: dict[str, tuple[float, float]] = {}
    approximation: dict[str, Any] = {}
    sample_for_grid: RetrievalSample | None = None
    classes, class_sizes = np.unique(gallery_ids, return_counts=True)
    pos = np.clip(np.searchsorted(classes, query_labels), 0, classes.size - 1)
    n_relevant = np.where(classes[pos] == query_labels, class_sizes[pos], 0).astype(np.int64)
    groups = _groups(query_groups, gallery_groups, queries.shape[0], gallery.shape[0], separate)
    if groups is not None:  # the query itself is in its own group, so this also removes it
        n_relevant -= _pair_counts(query_labels, groups[0], gallery_ids, groups[1])
        excluded = _pair_counts(np.zeros_like(groups[0]), groups[0], np.zeros_like(groups[1]), groups[1])
    elif not separate:
        n_relevant -= 1
    lone = n_relevant == 0
    knn_keys = [key for key in others if needs[key] == "knn"]
    rank_keys = [key for key in others if needs[key] == "ranks"]
    cluster_keys = [key for key in others if needs[key] == "clusters"]
    # checked before the search: a bad sample size must not cost a full search first
    cluster_size = _cluster_sample_size(opts, queries.shape, n_classes) if cluster_keys else None
    spec = parse_index(opts.index)
    backend_name = "none"
    choice = None
    if ks or knn_keys or rank_keys:
        if lone.all():
            raise UsageError(
                "no query has another item of its class among the candidates",
                hint="every class has a single item here; retrieval metrics need classes of >= 2 items",
            )
        by_rank = bool(rank_keys) and int(n_relevant.max()) > LARGE_R_MIN
        if by_rank and set(rank_keys) - set(BY_RANK):
            raise UsageError(
                f"{sorted(set(rank_keys) - set(BY_RANK))} cannot be scored from score rows (R > {LARGE_R_MIN})",
                hint="leave that metric out on datasets with classes this large",
            )
        need = max(
            [
                *ks,
                1,
                *(M.METRICS[key].neighbours for key in knn_keys),
                int(n_relevant.max()) if rank_keys and not by_rank else 1,
            ]
        )
        available = gallery.shape[0] - (0 if separate else 1)
        if groups is not None:
            available = gallery.shape[0] - int(excluded.max())
        if ks and ks[-1] > available:
            raise UsageError(
                f"recall@{ks[-1]} asks for more neighbours than the {available} candidates per query",
                hint=f"use K <= {available} (--recall-k)",
            )
        if opts.retrieval_sample:  # the worst queries are ranked by their wrong neighbours among the grid's k
            need = max(need, min(opts.retrieval_k, available))
        fetch = need
        if groups is not None:
            # exclusion by group: fetch the largest group's worth more, then drop each query's own group
            fetch = min(need + int(excluded.max()), gallery.shape[0] - (0 if separate else 1))
        candidates = np.flatnonzero(~lone)
        scored: NDArray[np.int64] | None = None  # the sampled query rows, None: every query
        if opts.queries is not None:
            if opts.queries > candidates.size:
                raise UsageError(
                    f"--queries {opts.queries} exceeds the {candidates.size} queries that have a relevant item",
                    hint=f"use --queries <= {candidates.size}, or drop --queries to score every query",
                )
            scored = query_sample(candidates, opts.queries, opts.seed)
        choice = choose_backend(opts.device, opts.backend, k=fetch + 2)
        engine: SearchBackend
        if spec.exact:
            engine = build_backend(choice, gallery, opts.distance)
        else:
            if choice.library != "faiss" or choice.gpu:
                raise UsageError(
                    f"--index {spec.kind} runs on faiss-cpu, not on {choice.library}-{choice.device}",
                    hint="add --device cpu (and keep the faiss backend)",
                )
            engine = ApproximateBackend(gallery, opts.distance, spec, seed=opts.seed)
        backend_name = engine.name

        def subset(values: NDArray[Any]) -> NDArray[Any]:
            return values[scored] if scored is not None else values

        per_query = _score_queries(
            engine,
            subset(queries),
            subset(query_labels),
            gallery_ids,
            subset(n_relevant),
            query_ids=scored,
            exclude_self=not separate,
            need=need,
            fetch=fetch,
            groups=(subset(groups[0]), groups[1]) if groups is not None else None,
            grid_k=min(opts.retrieval_k, need),
            ks=ks,
            list_keys=knn_keys if by_rank else [*knn_keys, *rank_keys],
            rank_keys=rank_keys if by_rank else [],
            tile_size=opts.tile_size,
            on_event=on_event,
        )
        keep = ~subset(lone)
        for key in [*(f"recall@{k}" for k in ks), *knn_keys, *rank_keys]:
            kept = per_query[key][keep]
            values[key] = float(kept.mean())
            if scored is not None:
                intervals[key] = (
                    wilson_interval(int(kept.sum()), int(kept.size))
                    if M.metric_info(key).interval == "wilson"
                    else bootstrap_mean_interval(kept, seed=opts.seed)
                )
        if scored is not None:
            approximation["queries"] = {
                "sampled": int(scored.size),
                "of": int(candidates.size),
                "seed": int(opts.seed),
                "intervals": SAMPLE_INTERVALS,
            }
        if not spec.exact:
            approximation["index"] = _measure_agreement(
                engine, gallery, opts.distance, queries, query_labels, gallery_ids, candidates, ks, opts, separate
            )
        if opts.retrieval_sample:
            rows = scored if scored is not None else np.arange(queries.shape[0], dtype=np.int64)
            sample_for_grid = _retrieval_sample(
                engine, queries, query_labels, gallery_ids, rows[keep], per_query, keep, opts, separate, available
            )

    if cluster_keys:
        if choice is None:
            choice = choose_backend(opts.device, opts.backend)
        point_labels, clusters = _clusters(queries, query_labels, n_classes, cluster_size, opts, choice, on_event)
        if cluster_size is not None:
            approximation["clustering"] = {
                "sample": int(cluster_size),
                "of": int(queries.shape[0]),
                "classes": int(np.unique(point_labels).size),
                "automatic": opts.cluster_sample is None,
                "rule": "class-stratified (every class its proportional share), seeded",
            }
        if backend_name == "none":
            backend_name = f"{choice.library}-{choice.device}"
        for key in cluster_keys:
            of_clusters = M.METRICS[key].of_clusters
            assert of_clusters is not None, f"clustering metric {key} has no function"
            values[key] = of_clusters(point_labels, clusters)

    ordered = {f"recall@{k}": values[f"recall@{k}"] for k in ks}
    ordered.update({key: values[key] for key in others})
    return EvalOutcome(
        metrics=ordered,
        lone_queries=int(lone.sum()),
        n_queries=int(queries.shape[0]),
        n_gallery=int(gallery.shape[0]),
        backend=backend_name,
        seconds=time.perf_counter() - started,
        embedding_dim=int(queries.shape[1]),
        distance=opts.distance,
        protocol=PROTOCOL_SPLIT if separate else PROTOCOL_SELF,
        recall_k=ks,
        intervals={key: intervals[key] for key in ordered if key in intervals},
        approximation=approximation,
        retrieval=sample_for_grid,
    )


def _inputs(
    embeddings: Any, labels: Any, gallery_embeddings: Any, gallery_labels: Any, distance: Distance
) -> tuple[NDArray[np.float32], NDArray[np.int64], NDArray[np.float32], NDArray[np.int64]]:
    """(queries, their labels, gallery, its labels), checked and L2-normalised under cosine; without a gallery
    the queries are the gallery (the very same arrays)."""
    queries = as_matrix(embeddings, "embeddings")
    query_labels = as_labels(labels, queries.shape[0], "labels")
    if (gallery_embeddings is None) != (gallery_labels is None):
        raise UsageError("gallery embeddings and gallery labels must be given together", hint="pass both or neither")
    separate = gallery_embeddings is not None
    if separate:
        gallery = as_matrix(gallery_embeddings, "gallery embeddings")
        gallery_ids = as_labels(gallery_labels, gallery.shape[0], "gallery labels")
        if gallery.shape[1] != queries.shape[1]:
            raise UsageError(
                f"query embeddings have dimension {queries.shape[1]} but gallery ones {gallery.shape[1]}",
                hint="embed queries and gallery with the same model",
            )
    else:
        gallery, gallery_ids = queries, query_labels
    if int(np.unique(query_labels).size) < 2:
        raise UsageError(
            "the labels hold a single class: retrieval and clustering metrics are meaningless",
            hint="evaluate a split with at least two classes",
        )
    if distance == "cosine":
        queries = _normalise(queries, "embeddings")
        gallery = _normalise(gallery, "gallery embeddings") if separate else queries
    return queries, query_labels, gallery, gallery_ids


def _clusters(
    queries: NDArray[np.float32],
    query_labels: NDArray[np.int64],
    n_classes: int,
    sample_size: int | None,
    opts: EvalOptions,
    choice: BackendChoice,
    on_event: EventHandler | None,
) -> tuple[NDArray[np.int64], NDArray[Any]]:
    """(labels, k-means cluster ids) of the queries, or of a class-stratified sample of `sample_size`."""
    points, point_labels, n_clusters = queries, query_labels, n_classes
    if sample_size is not None:
        picks = stratified_sample(query_labels, sample_size, opts.seed)
        points, point_labels = queries[picks], query_labels[picks]
        n_clusters = int(np.unique(point_labels).size)
    task = f"k-means k={n_clusters}"
    emit(on_event, Event("start", task, total=float(opts.kmeans_nredo), unit="runs"))
    if choice.library == "faiss":
        clusters = kmeans_faiss(
            points, n_clusters, niter=opts.kmeans_niter, nredo=opts.kmeans_nredo, seed=opts.seed, gpu=choice.gpu
        )
    else:
        clusters = kmeans_torch(
            points,
            n_clusters,
            niter=opts.kmeans_niter,
            nredo=opts.kmeans_nredo,
            seed=opts.seed,
            device=choice.torch_device(),
        )
    emit(on_event, Event("advance", task, amount=float(opts.kmeans_nredo)))
    emit(on_event, Event("finish", task))
    return point_labels, clusters


def _score_queries(
    engine: SearchBackend,
    queries: NDArray[np.float32],
    query_labels: NDArray[np.int64],
    gallery_ids: NDArray[np.int64],
    n_relevant: NDArray[np.int64],
    *,
    query_ids: NDArray[np.int64] | None,
    exclude_self: bool,
    need: int,
    fetch: int,
    groups: tuple[NDArray[np.int64], NDArray[np.int64]] | None,
    grid_k: int,
    ks: Sequence[int],
    list_keys: Sequence[str],
    rank_keys: Sequence[str],
    tile_size: int,
    on_event: EventHandler | None,
) -> dict[str, NDArray[Any]]:
    """Per-query values of every selected retrieval metric, first-hit ranks and wrong neighbours among the
    first `grid_k`: `list_keys` (and recall@K for `ks`) from one neighbour list, `rank_keys` from whole
    score rows (R-Precision and MAP@R when R is too large for a list)."""
    n = queries.shape[0]
    first_hit = np.zeros(n, dtype=np.int64)
    wrong = np.zeros(n, dtype=np.int64)
    per_query: dict[str, NDArray[Any]] = {key: np.full(n, np.nan) for key in [*list_keys, *rank_keys]}
    per_query.update({f"recall@{k}": np.zeros(n, dtype=np.float64) for k in ks})
    # with only R-Precision/MAP@R on the rank path, a neighbour list would go unused
    if ks or list_keys or not rank_keys:
        task = f"search k={need}"
        emit(on_event, Event("start", task, total=float(n), unit="queries"))
        for start, stop, _scores, idx in iter_neighbours(
            engine, queries, fetch, exclude_self=exclude_self, tile_size=tile_size, query_ids=query_ids
        ):
            kept = None
            if groups is not None:
                idx, kept = _drop_groups(idx, groups[0][start:stop], groups[1], need)
            relevant = gallery_ids[idx] == query_labels[start:stop, None]
            if kept is not None:
                relevant &= kept
            first_hit[start:stop] = M.first_hit_rank(relevant)
            wrong[start:stop] = grid_k - relevant[:, :grid_k].sum(axis=1)
            n_rel = n_relevant[start:stop]
            hits = head = M.Hits(relevant, n_rel, first_hit[start:stop])
            for k in ks:
                per_query[f"recall@{k}"][start:stop] = _per_query("recall", replace(hits, k=k))
            if any(M.METRICS[key].needs == "ranks" for key in list_keys):
                # only the first R columns matter to the rank metrics; R is small next to K in SOP
                head = replace(hits, relevant=relevant[:, : max(1, int(n_rel.max()))])
            for key in list_keys:
                per_query[key][start:stop] = _per_query(key, head if M.METRICS[key].needs == "ranks" else hits)
            emit(on_event, Event("advance", task, amount=float(stop - start)))
        emit(on_event, Event("finish", task))
    if rank_keys:
        by_rank = dict(
            zip(
                BY_RANK,
                _r_metrics_by_rank(
                    engine,
                    queries,
                    query_labels,
                    gallery_ids,
                    n_relevant,
                    exclude_self=exclude_self,
                    on_event=on_event,
                    query_ids=query_ids,
                    groups=groups,
                ),
                strict=True,
            )
        )
        per_query.update({key: by_rank[key] for key in rank_keys})
    return {**per_query, "first_hit": first_hit, "wrong": wrong}


def _per_query(key: str, hits: M.Hits) -> NDArray[np.float64]:
    function = M.METRICS[key].per_query
    assert function is not None, f"retrieval metric {key} has no per-query function"
    return function(hits)


def _measure_agreement(
    engine: SearchBackend,
    gallery: NDArray[np.float32],
    distance: Distance,
    queries: NDArray[np.float32],
    query_labels: NDArray[np.int64],
    gallery_ids: NDArray[np.int64],
    candidates: NDArray[np.int64],
    ks: Sequence[int],
    opts: EvalOptions,
    separate: bool,
) -> dict[str, Any]:
    """What the approximate index changed: top-1 / top-K agreement with exact search on a query sample."""
    assert isinstance(engine, ApproximateBackend)
    size = min(opts.agreement_queries, int(candidates.size))
    rows = query_sample(candidates, size, opts.seed + 1)  # not the scored sample: an independent check
    exact = build_backend(BackendChoice("faiss", "cpu"), gallery, distance)
    measured = agreement(
        exact,
        engine,
        queries[rows],
        query_labels[rows],
        None if separate else rows,
        gallery_ids,
        ks or [1],
        tile_size=opts.tile_size,
    )
    return {
        "kind": engine.spec.kind,
        "params": engine.params,
        "agreement_queries": measured.queries,
        "top1_agreement": measured.top1,
        "topk_agreement": {f"recall@{k}": share for k, share in measured.topk.items()},
        "recall_bounds": recall_bounds(measured),
        "filled_exactly": engine.filled_exactly,
    }


def _retrieval_sample(
    engine: SearchBackend,
    queries: NDArray[np.float32],
    query_labels: NDArray[np.int64],
    gallery_ids: NDArray[np.int64],
    rows: NDArray[np.int64],
    per_query: dict[str, NDArray[Any]],
    keep: NDArray[np.bool_],
    opts: EvalOptions,
    separate: bool,
    available: int,
) -> RetrievalSample:
    """The worst scored queries (most wrong neighbours, then latest first hit), then a seeded random draw."""
    count = min(opts.retrieval_sample or 0, int(rows.size))
    n_worst = (count + 1) // 2
    wrong = per_query["wrong"][keep]
    first = per_query["first_hit"][keep]
    late = np.where(first > 0, first, np.iinfo(np.int64).max)
    order = np.lexsort((rows, -late, -wrong))  # most wrong first, then the latest first hit, then by row
    worst = rows[order[:n_worst]]
    rest = np.setdiff1d(rows, worst)
    drawn = query_sample(rest, min(count - n_worst, int(rest.size)), opts.seed + 2) if rest.size else rest
    picked = np.concatenate([worst, drawn]).astype(np.int64)
    k = min(opts.retrieval_k, available)
    neighbours = np.concatenate(
        [
            idx
            for _, _, _, idx in iter_neighbours(
                engine, queries[picked], k, exclude_self=not separate, tile_size=opts.tile_size, query_ids=picked
            )
        ]
    )
    correct = gallery_ids[neighbours] == query_labels[picked][:, None]
    return RetrievalSample(
        queries=[int(q) for q in picked],
        kinds=["worst"] * int(worst.size) + ["random"] * int(drawn.size),
        neighbours=neighbours.tolist(),
        correct=correct.tolist(),
    )


def _cluster_sample_size(opts: EvalOptions, shape: tuple[int, ...], n_classes: int) -> int | None:
    """Items k-means runs on when not all of them: the explicit --cluster-sample, or the automatic size."""
    n, dim = int(shape[0]), int(shape[1])
    if opts.cluster_sample is not None:
        if opts.cluster_sample == 0 or opts.cluster_sample == n:
            return None
        if opts.cluster_sample > n:
            raise UsageError(
                f"--cluster-sample {opts.cluster_sample} exceeds the {n} items", hint=f"use <= {n}, or 0 for all items"
            )
        if opts.cluster_sample < 2 * n_classes:
            raise UsageError(
                f"--cluster-sample {opts.cluster_sample} leaves fewer than 2 items per class ({n_classes} classes)",
                hint=f"use --cluster-sample >= {2 * n_classes}",
            )
        return opts.cluster_sample
    per_item = float(n_classes) * dim * opts.kmeans_niter * opts.kmeans_nredo
    if n * per_item <= KMEANS_AUTO_BUDGET:
        return None
    return min(n, max(2 * n_classes, int(KMEANS_AUTO_BUDGET // per_item)))
