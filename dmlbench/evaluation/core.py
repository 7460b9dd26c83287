"""Score embeddings: validation, protocol, tiled kNN + per-query metric reduction, k-means metrics."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

import dmlbench.evaluation.metrics as M
from dmlbench.errors import UsageError
from dmlbench.evaluation.clustering import DEFAULT_NITER, kmeans_faiss, kmeans_torch
from dmlbench.evaluation.search import (
    BackendName,
    Distance,
    SearchBackend,
    build_backend,
    choose_backend,
    iter_neighbours,
)
from dmlbench.events import Event, EventHandler, emit

RETRIEVAL_ORDER = ("precision@1", "r_precision", "map@r")
CLUSTERING_ORDER = ("nmi", "f1")
PROTOCOL_SELF = "query=gallery, self excluded by index"
PROTOCOL_SPLIT = "query vs gallery"
# Above this largest R, R-Precision and MAP@R come from ranks over whole score rows instead of a k-NN
# list of R neighbours: faiss's heap search slows sharply with k (k ~ 7,000 on 35,000 items: minutes).
# Measured on 35,000 gallery items, 64-d: both cost the same near R = 2,000, the list wins below.
LARGE_R_MIN = 2048
_RANK_TILE_ELEMENTS = 1 << 20  # scores ranked at once (4 MB; larger tiles measured slower)
_SCORE_BLOCK_ELEMENTS = 1 << 24  # scores computed at once on the rank path (64 MB)


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


def _select(metrics: Iterable[str] | None, recall_k: Sequence[int]) -> tuple[list[int], list[str]]:
    """Expand metric names into (recall cut-offs, other metric keys in canonical order)."""
    ks = sorted({int(k) for k in recall_k})
    if any(k < 1 for k in ks):
        raise UsageError(f"recall@K needs K >= 1, got {ks}", hint="e.g. --recall-k 1,2,4,8")
    if metrics is None:
        return ks, [*RETRIEVAL_ORDER, *CLUSTERING_ORDER]
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
    order = [*RETRIEVAL_ORDER, *CLUSTERING_ORDER]
    return sorted(wanted_k), [key for key in order if key in others]


def _r_metrics_by_rank(
    engine: SearchBackend,
    queries: NDArray[np.float32],
    query_labels: NDArray[np.int64],
    gallery_labels: NDArray[np.int64],
    n_relevant: NDArray[np.int64],
    *,
    exclude_self: bool,
    on_event: EventHandler | None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-query (R-Precision, MAP@R) from whole score rows, a few queries at a time (large R)."""
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
        for start in range(first, first + scores.shape[0], tile):
            stop = min(start + tile, first + scores.shape[0])
            rprec[start:stop], mapr[start:stop] = M.r_metrics_from_scores(
                scores[start - first : stop - first],
                query_labels[start:stop],
                gallery_labels,
                n_relevant[start:stop],
                np.arange(start, stop, dtype=np.int64) if exclude_self else None,
                harmonic,
            )
        emit(on_event, Event("advance", task, amount=float(scores.shape[0])))
    emit(on_event, Event("finish", task))
    return rprec, mapr


@dataclass(frozen=True)
class EvalOptions:
    """How to score embeddings: which metrics, which K, on what device, with which distance and k-means.

    `metrics=None` computes every metric; a subset names `recall` (all K), `recall@K` or any metric key.
    """

    recall_k: Sequence[int] = (1, 2, 4, 8)
    metrics: Sequence[str] | None = None
    device: str = "auto"
    distance: Distance = "cosine"
    kmeans_niter: int = DEFAULT_NITER
    kmeans_nredo: int = 1
    seed: int = 0
    backend: BackendName = "auto"
    tile_size: int = 2048


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
    """Reject a bad distance, k-means setting or metric selection (UsageError) before any work is done."""
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
    _select(options.metrics, options.recall_k)


def evaluate_embeddings(
    embeddings: Any,
    labels: Any,
    options: EvalOptions | None = None,
    *,
    gallery_embeddings: Any = None,
    gallery_labels: Any = None,
    on_event: EventHandler | None = None,
    **overrides: Any,
) -> EvalOutcome:
    """Score embeddings: metric values (`recall@K`, `precision@1`, `r_precision`, `map@r`, `nmi`, `f1`),
    lone-query count, sizes, protocol, backend and time.

    `overrides` are EvalOptions fields replacing those of `options` (`evaluate_embeddings(x, y, metrics=["nmi"])`).
    Without a gallery, every item queries all others (itself excluded by index). With one, queries
    search the gallery only. Lone queries (no same-class item among the candidates) are counted and
    left out of every retrieval metric. Clustering metrics use the query embeddings.
    """
    opts = with_overrides(options, overrides)
    recall_k, metrics, device, distance = opts.recall_k, opts.metrics, opts.device, opts.distance
    kmeans_niter, kmeans_nredo, seed, backend, tile_size = (
        opts.kmeans_niter,
        opts.kmeans_nredo,
        opts.seed,
        opts.backend,
        opts.tile_size,
    )
    started = time.perf_counter()
    check_options(opts)
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
    n_classes = int(np.unique(query_labels).size)
    if n_classes < 2:
        raise UsageError(
            "the labels hold a single class: retrieval and clustering metrics are meaningless",
            hint="evaluate a split with at least two classes",
        )
    if distance == "cosine":
        queries = _normalise(queries, "embeddings")
        gallery = _normalise(gallery, "gallery embeddings") if separate else queries
    ks, others = _select(metrics, recall_k)

    values: dict[str, float] = {}
    classes, class_sizes = np.unique(gallery_ids, return_counts=True)
    pos = np.clip(np.searchsorted(classes, query_labels), 0, classes.size - 1)
    n_relevant = np.where(classes[pos] == query_labels, class_sizes[pos], 0).astype(np.int64)
    if not separate:
        n_relevant -= 1
    lone = n_relevant == 0
    retrieval = [key for key in others if key in RETRIEVAL_ORDER]
    backend_name = "none"
    choice = None
    if ks or retrieval:
        if lone.all():
            raise UsageError(
                "no query has another item of its class among the candidates",
                hint="every class has a single item here; retrieval metrics need classes of >= 2 items",
            )
        r_metrics = bool({"r_precision", "map@r"} & set(retrieval))
        by_rank = r_metrics and int(n_relevant.max()) > LARGE_R_MIN
        need = max([*ks, 1, int(n_relevant.max()) if r_metrics and not by_rank else 1])
        available = gallery.shape[0] - (0 if separate else 1)
        if ks and ks[-1] > available:
            raise UsageError(
                f"recall@{ks[-1]} asks for more neighbours than the {available} candidates per query",
                hint=f"use K <= {available} (--recall-k)",
            )
        choice = choose_backend(device, backend, k=need + 2)
        engine = build_backend(choice, gallery, distance)
        backend_name = engine.name
        first_hit = np.zeros(queries.shape[0], dtype=np.int64)
        p1 = np.zeros(queries.shape[0], dtype=bool)
        rprec = np.full(queries.shape[0], np.nan)
        mapr = np.full(queries.shape[0], np.nan)
        # with only R-Precision/MAP@R on the rank path, a neighbour list would go unused
        if ks or "precision@1" in retrieval or not by_rank:
            task = f"search k={need}"
            emit(on_event, Event("start", task, total=float(queries.shape[0]), unit="queries"))
            for start, stop, _scores, idx in iter_neighbours(
                engine, queries, need, exclude_self=not separate, tile_size=tile_size
            ):
                relevant = gallery_ids[idx] == query_labels[start:stop, None]
                first_hit[start:stop] = M.first_hit_rank(relevant)
                p1[start:stop] = M.precision_at_1(relevant)
                if r_metrics and not by_rank:
                    # only the first R columns matter to R-precision and MAP@R; R is small next to K in SOP
                    head = relevant[:, : max(1, int(n_relevant[start:stop].max()))]
                    rprec[start:stop] = M.r_precision(head, n_relevant[start:stop])
                    mapr[start:stop] = M.map_at_r(head, n_relevant[start:stop])
                emit(on_event, Event("advance", task, amount=float(stop - start)))
            emit(on_event, Event("finish", task))
        if by_rank:
            rprec, mapr = _r_metrics_by_rank(
                engine, queries, query_labels, gallery_ids, n_relevant, exclude_self=not separate, on_event=on_event
            )
        keep = ~lone
        for k in ks:
            values[f"recall@{k}"] = float(M.recall_at_k(first_hit[keep], k).mean())
        per_query = {"precision@1": p1.astype(np.float64), "r_precision": rprec, "map@r": mapr}
        for key in retrieval:
            values[key] = float(per_query[key][keep].mean())

    clustering = [key for key in others if key in CLUSTERING_ORDER]
    if clustering:
        if choice is None:
            choice = choose_backend(device, backend)
        task = f"k-means k={n_classes}"
        emit(on_event, Event("start", task, total=float(kmeans_nredo), unit="runs"))
        if choice.library == "faiss":
            clusters = kmeans_faiss(
                queries, n_classes, niter=kmeans_niter, nredo=kmeans_nredo, seed=seed, gpu=choice.gpu
            )
        else:
            clusters = kmeans_torch(
                queries, n_classes, niter=kmeans_niter, nredo=kmeans_nredo, seed=seed, device=choice.torch_device()
            )
        emit(on_event, Event("advance", task, amount=float(kmeans_nredo)))
        emit(on_event, Event("finish", task))
        if backend_name == "none":
            backend_name = f"{choice.library}-{choice.device}"
        if "nmi" in clustering:
            values["nmi"] = M.nmi(query_labels, clusters)
        if "f1" in clustering:
            values["f1"] = M.pairwise_f1(query_labels, clusters)

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
        distance=distance,
        protocol=PROTOCOL_SPLIT if separate else PROTOCOL_SELF,
        recall_k=ks,
    )
