"""Approximate search (faiss IVF / HNSW) behind `--index`, and its measured agreement with exact search.

An approximate index is a `SearchBackend` like the exact ones, so the evaluation loop is unchanged; what
changes is that its neighbour lists may differ from the exact ones. `agreement` measures by how much on
a query sample, and `recall_bounds` turns that into the bound each Recall@K can have moved by (proof in
docs/metrics.md "Approximate search").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dmlbench.errors import EnvironmentFailure, UnknownNameError, UsageError
from dmlbench.evaluation.search import (
    Distance,
    FloatMatrix,
    IndexMatrix,
    SearchBackend,
    faiss_available,
    iter_neighbours,
)
from dmlbench.registry import did_you_mean

EXACT = "flat"
# kind -> parameter -> default (None: derived from the gallery size when the index is built)
INDEX_KINDS: dict[str, dict[str, int | None]] = {
    EXACT: {},
    "ivf": {"nlist": None, "nprobe": 32},
    "hnsw": {"m": 32, "ef_search": 128, "ef_construction": 64},
}
INDEX_HINT = "e.g. --index ivf:nlist=1024,nprobe=32 or --index hnsw:m=32,ef_search=128 (docs/metrics.md)"
_TRAIN_POINTS_PER_LIST = 39  # faiss warns below this many training points per IVF list
_TRAIN_POINTS_PER_LIST_USED = 64


@dataclass(frozen=True)
class IndexSpec:
    """An index kind and its parameters, parsed from "kind[:name=value,...]"."""

    kind: str = EXACT
    params: Mapping[str, int] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return self.kind == EXACT

    def text(self) -> str:
        """The spec in the form `parse_index` reads, parameters sorted."""
        if not self.params:
            return self.kind
        return self.kind + ":" + ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))


def parse_index(text: str) -> IndexSpec:
    """ "flat", "ivf", "hnsw:m=16,ef_search=64", ... -> IndexSpec; a bad kind or parameter is a UsageError."""
    kind, _, rest = text.strip().lower().partition(":")
    kind = kind.strip()
    if kind not in INDEX_KINDS:
        known = list(INDEX_KINDS)
        raise UnknownNameError(
            f"unknown --index kind {kind!r}", hint=f"{did_you_mean(kind, known)}known: {', '.join(known)}"
        )
    allowed = INDEX_KINDS[kind]
    params: dict[str, int] = {}
    for item in (part.strip() for part in rest.split(",") if part.strip()):
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in allowed:
            options = ", ".join(allowed) or "none"
            raise UsageError(
                f"bad --index parameter {item!r} for {kind}",
                hint=f"{did_you_mean(name, list(allowed)) if allowed else ''}{kind} takes: {options}; {INDEX_HINT}",
            )
        try:
            number = int(value)
        except ValueError:
            raise UsageError(f"--index parameter {name} must be an integer, got {value!r}", hint=INDEX_HINT) from None
        if number < 1:
            raise UsageError(f"--index parameter {name} must be >= 1, got {number}", hint=INDEX_HINT)
        params[name] = number
    return IndexSpec(kind, params)


def resolved_params(spec: IndexSpec, n: int) -> dict[str, int]:
    """Every parameter of `spec` with defaults filled in for a gallery of `n` items."""
    params: dict[str, int] = {}
    for name, default in INDEX_KINDS[spec.kind].items():
        if name in spec.params:
            params[name] = int(spec.params[name])
        elif default is not None:
            params[name] = default
        elif name == "nlist":  # faiss's rule of thumb: about 4 sqrt(N) lists
            params[name] = max(1, min(n // _TRAIN_POINTS_PER_LIST, int(4 * math.sqrt(n))))
    return params


class ApproximateBackend(SearchBackend):
    """faiss IVF-Flat or HNSW-Flat over the gallery (inner product for cosine, L2 otherwise).

    Rows the index cannot fill (an IVF probe reaching fewer than k items, HNSW with a small beam) are
    searched exactly, so every list is complete; `filled_exactly` counts them.
    """

    def __init__(self, gallery: FloatMatrix, distance: Distance, spec: IndexSpec, *, seed: int) -> None:
        super().__init__(gallery, distance)
        if not faiss_available():
            raise EnvironmentFailure(
                f"--index {spec.kind} needs faiss, which is not installed", hint="pip install faiss-cpu"
            )
        import faiss

        self.spec = spec
        self.params = resolved_params(spec, self.size)
        dim = int(gallery.shape[1])
        metric = faiss.METRIC_INNER_PRODUCT if distance == "cosine" else faiss.METRIC_L2
        data = np.ascontiguousarray(gallery, dtype=np.float32)
        index: Any
        if spec.kind == "ivf":
            nlist = self.params["nlist"]
            if nlist > self.size:
                raise UsageError(
                    f"--index ivf: nlist={nlist} lists for {self.size} gallery items", hint="use nlist <= gallery size"
                )
            quantizer = faiss.IndexFlatIP(dim) if distance == "cosine" else faiss.IndexFlatL2(dim)
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, metric)
            index.cp.seed = int(seed)
            train = data
            # k-means over every item costs more than the search itself at 1M items (measured: most of a
            # 23-minute run); 64 points per list is above faiss's warning threshold of 39
            wanted = nlist * _TRAIN_POINTS_PER_LIST_USED
            if self.size > wanted:
                picks = np.sort(np.random.default_rng(seed).choice(self.size, wanted, replace=False))
                train = data[picks]
            index.train(train)
            index.add(data)
            index.nprobe = min(self.params["nprobe"], nlist)
            self._quantizer = quantizer  # the IVF index does not own it
        else:
            index = faiss.IndexHNSWFlat(dim, self.params["m"], metric)
            index.hnsw.efConstruction = self.params["ef_construction"]
            index.add(data)
        self._index = index
        self.filled_exactly = 0
        self.name = f"faiss-cpu {spec.kind} ({', '.join(f'{k}={v}' for k, v in sorted(self.params.items()))})"

    def search(self, queries: FloatMatrix, k: int) -> tuple[FloatMatrix, IndexMatrix]:
        if self.spec.kind == "hnsw":  # the beam must hold at least k candidates
            self._index.hnsw.efSearch = max(self.params["ef_search"], k)
        distances, indices = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        scores = (distances if self.distance == "cosine" else -distances).astype(np.float32, copy=False)
        indices = indices.astype(np.int64, copy=False)
        short = np.flatnonzero((indices < 0).any(axis=1))
        if short.size:
            self.filled_exactly += int(short.size)
            full = self.full_scores(queries[short])
            top = np.argsort(-full, axis=1, kind="stable")[:, :k]
            scores, indices = scores.copy(), indices.copy()
            scores[short] = np.take_along_axis(full, top, axis=1)
            indices[short] = top
        return scores, indices


@dataclass(frozen=True)
class Agreement:
    """How approximate neighbour lists compare with exact ones on a query sample."""

    queries: int
    top1: float  # share of queries whose nearest neighbour is the same item
    topk: dict[int, float]  # K -> share of queries whose top-K sets are equal
    recall_delta: dict[int, float]  # K -> approximate minus exact Recall@K on this sample
    recall_changed: dict[int, float]  # K -> share of queries whose hit-within-K outcome differs


def agreement(
    exact: SearchBackend,
    approximate: SearchBackend,
    queries: FloatMatrix,
    query_labels: NDArray[np.int64],
    query_ids: IndexMatrix | None,
    gallery_labels: NDArray[np.int64],
    ks: Sequence[int],
    *,
    tile_size: int,
) -> Agreement:
    """Compare both backends' top-max(K) lists for `queries` (with `query_ids`, each excludes itself)."""
    top = max([*ks, 1])

    def lists(engine: SearchBackend) -> IndexMatrix:
        parts = [
            idx
            for _, _, _, idx in iter_neighbours(
                engine, queries, top, exclude_self=query_ids is not None, tile_size=tile_size, query_ids=query_ids
            )
        ]
        return np.concatenate(parts)

    exact_idx, approx_idx = lists(exact), lists(approximate)
    n = int(queries.shape[0])
    exact_hit = gallery_labels[exact_idx] == query_labels[:, None]
    approx_hit = gallery_labels[approx_idx] == query_labels[:, None]
    topk: dict[int, float] = {}
    delta: dict[int, float] = {}
    changed: dict[int, float] = {}
    for k in sorted(set(ks)):
        same = (np.sort(exact_idx[:, :k], axis=1) == np.sort(approx_idx[:, :k], axis=1)).all(axis=1)
        topk[k] = float(same.mean())
        exact_recall, approx_recall = exact_hit[:, :k].any(axis=1), approx_hit[:, :k].any(axis=1)
        delta[k] = float(approx_recall.mean() - exact_recall.mean())
        changed[k] = float((exact_recall != approx_recall).mean())
    return Agreement(n, float((exact_idx[:, 0] == approx_idx[:, 0]).mean()), topk, delta, changed)


def recall_bounds(result: Agreement) -> dict[str, dict[str, float]]:
    """Per Recall@K: the bound |ΔR@K| <= 1 - share of equal top-K sets and its Wilson 95% upper limit,
    the tighter bound |ΔR@K| <= share of queries whose hit-within-K outcome changed (with its upper
    limit), and the difference measured on the sample.

    Sample shares describe the sample; the Wilson upper limits bound the whole query set at 95%
    confidence (each share is a proportion estimated from the sample).
    """
    from dmlbench.evaluation.sampling import wilson_interval

    bounds: dict[str, dict[str, float]] = {}
    for k, share in result.topk.items():
        unequal = round((1.0 - share) * result.queries)
        bounds[f"recall@{k}"] = {
            "bound": 1.0 - share,
            "bound_upper95": wilson_interval(unequal, result.queries)[1],
            "changed": result.recall_changed[k],
            "changed_upper95": wilson_interval(round(result.recall_changed[k] * result.queries), result.queries)[1],
            "sample_delta": result.recall_delta[k],
        }
    return bounds
