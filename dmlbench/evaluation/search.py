"""Exact k-nearest-neighbour search, tiled over queries so the N x N matrix is never built.

Backends: faiss IndexFlatIP/IndexFlatL2 (faiss-gpu when the device is CUDA and faiss sees a GPU),
and torch matmul + topk on CPU or CUDA (needs no faiss). Every backend returns scores where higher
means closer (inner product for cosine, minus the squared L2 distance for euclidean); the ordering
step below is shared, so results agree across backends up to floating-point near-ties:

* the query itself is removed **by index**, wherever it lands (duplicates may outrank it);
* neighbours are ordered by (score descending, gallery index ascending), so exact ties are deterministic;
* a row whose tie group straddles the fetched boundary is recomputed against the whole gallery, so which
  tied items make the top k does not depend on the backend's selection order.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from dmlbench.errors import DeviceError, EnvironmentFailure, UsageError

if TYPE_CHECKING:
    import torch

Distance = Literal["cosine", "euclidean"]
BackendName = Literal["auto", "faiss", "torch"]
FloatMatrix = NDArray[np.float32]
IndexMatrix = NDArray[np.int64]

FAISS_GPU_MAX_K = 2048  # faiss-gpu's k-selection limit
_TORCH_TILE_ELEMENTS = 1 << 26  # 256 MB of float32 scores per tile on the torch path
_FULL_ROW_CHUNK = 64  # rows recomputed at once when ties straddle the boundary


class SearchBackend:
    """Exact search over a fixed gallery; subclasses implement `search`."""

    name = "base"

    def __init__(self, gallery: FloatMatrix, distance: Distance) -> None:
        self.gallery = gallery
        self.distance = distance
        self.size = int(gallery.shape[0])
        self._row_sq: FloatMatrix | None = None
        self._gallery64: NDArray[np.float64] | None = None

    def search(self, queries: FloatMatrix, k: int) -> tuple[FloatMatrix, IndexMatrix]:
        """Top-k (scores, gallery indices) per query, best first (tie order unspecified)."""
        raise NotImplementedError

    def full_scores(self, queries: FloatMatrix) -> FloatMatrix:
        """Scores of `queries` against the whole gallery, [m, N] (used only for tie-straddling rows)."""
        if self._gallery64 is None:  # converted once: tie rows come in many small chunks
            self._gallery64 = self.gallery.astype(np.float64)
        q64 = queries.astype(np.float64)
        scores = q64 @ self._gallery64.T
        if self.distance == "euclidean":
            q_sq = (q64**2).sum(axis=1)[:, None]
            g_sq = (self._gallery64**2).sum(axis=1)[None, :]
            scores = np.minimum(2.0 * scores - q_sq - g_sq, 0.0)
        return scores.astype(np.float32)

    def score_rows(self, queries: FloatMatrix) -> FloatMatrix:
        """float32 scores of `queries` against the whole gallery, [m, N], for rank-based metrics.

        float32 like the search itself (faiss runs float32 BLAS too), and several times faster than
        `full_scores`.
        """
        scores: FloatMatrix = np.ascontiguousarray(queries, dtype=np.float32) @ self.gallery.T
        if self.distance == "euclidean":
            if self._row_sq is None:
                self._row_sq = np.einsum("ij,ij->i", self.gallery, self.gallery)
            scores *= np.float32(2.0)
            scores -= np.einsum("ij,ij->i", queries, queries)[:, None]
            scores -= self._row_sq[None, :]
            np.minimum(scores, np.float32(0.0), out=scores)
        return scores

    def max_tile(self, requested: int) -> int:
        """Queries per tile this backend can take without exceeding its memory budget."""
        return requested


class FaissBackend(SearchBackend):
    """faiss exact flat index (IndexFlatIP for cosine on normalised vectors, IndexFlatL2 otherwise)."""

    def __init__(self, gallery: FloatMatrix, distance: Distance, *, gpu: bool) -> None:
        super().__init__(gallery, distance)
        import faiss

        dim = int(gallery.shape[1])
        index: Any = faiss.IndexFlatIP(dim) if distance == "cosine" else faiss.IndexFlatL2(dim)
        kind = "IndexFlatIP" if distance == "cosine" else "IndexFlatL2"
        if gpu:
            self._resources = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._resources, 0, index)
        index.add(np.ascontiguousarray(gallery, dtype=np.float32))
        self._index = index
        self.name = f"faiss-{'gpu' if gpu else 'cpu'} {kind}"

    def search(self, queries: FloatMatrix, k: int) -> tuple[FloatMatrix, IndexMatrix]:
        distances, indices = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        scores = distances if self.distance == "cosine" else -distances
        return scores.astype(np.float32, copy=False), indices.astype(np.int64, copy=False)


class TorchBackend(SearchBackend):
    """torch matmul + topk, on CPU (no faiss needed) or CUDA."""

    def __init__(self, gallery: FloatMatrix, distance: Distance, *, device: torch.device) -> None:
        super().__init__(gallery, distance)
        import torch

        self._torch = torch
        self.device = device
        self._gallery = torch.from_numpy(np.ascontiguousarray(gallery, dtype=np.float32)).to(device)
        self._gallery_sq = (self._gallery * self._gallery).sum(dim=1)
        self.name = f"torch-{device.type} matmul+topk"

    def _scores(self, queries: FloatMatrix) -> torch.Tensor:
        q = self._torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)).to(self.device)
        scores = q @ self._gallery.T
        if self.distance == "euclidean":
            scores.mul_(2.0).sub_((q * q).sum(dim=1, keepdim=True)).sub_(self._gallery_sq[None, :])
            scores.clamp_(max=0.0)
        return scores

    def search(self, queries: FloatMatrix, k: int) -> tuple[FloatMatrix, IndexMatrix]:
        with self._torch.no_grad():
            values, indices = self._torch.topk(self._scores(queries), k, dim=1, largest=True, sorted=True)
        return values.cpu().numpy().astype(np.float32, copy=False), indices.cpu().numpy().astype(np.int64)

    def full_scores(self, queries: FloatMatrix) -> FloatMatrix:
        with self._torch.no_grad():
            return self._scores(queries).cpu().numpy().astype(np.float32, copy=False)

    def score_rows(self, queries: FloatMatrix) -> FloatMatrix:
        return self.full_scores(queries)

    def max_tile(self, requested: int) -> int:
        return max(1, min(requested, _TORCH_TILE_ELEMENTS // max(self.size, 1)))


def faiss_available() -> bool:
    """Whether `import faiss` works here."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def faiss_gpu_count() -> int:
    """GPUs visible to faiss (0 for faiss-cpu builds or without faiss)."""
    try:
        import faiss
    except ImportError:
        return 0
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


@dataclass(frozen=True)
class BackendChoice:
    """Which library does the search and k-means, on which device ("cpu", "cuda" or "cuda:N")."""

    library: Literal["faiss", "torch"]
    device: str

    @property
    def gpu(self) -> bool:
        """Whether the work runs on a CUDA device."""
        return self.device.startswith("cuda")

    def torch_device(self) -> torch.device:
        """The device as a torch.device (imports torch)."""
        import torch

        return torch.device(self.device)


def _cuda_possible() -> bool:
    """Whether CUDA may exist, answered without importing torch where the OS makes that safe.

    Importing torch next to faiss-cpu loads a second OpenMP runtime, which measurably slows faiss on
    small machines, so the CPU path avoids it when no NVIDIA driver is present.
    """
    if "torch" not in sys.modules and sys.platform.startswith("linux"):
        if not (Path("/proc/driver/nvidia").exists() or Path("/dev/dxg").exists()):
            return False
    if sys.platform == "darwin":
        return False
    import torch

    return bool(torch.cuda.is_available())


def choose_backend(device: str, backend: BackendName = "auto", *, k: int = 0) -> BackendChoice:
    """Resolve (`device`, `backend`) to a concrete choice; never silently swaps a GPU for the CPU.

    auto on CPU: faiss if importable, else torch. auto on CUDA: faiss-gpu when faiss sees a GPU and
    k fits its selection limit, else torch on CUDA.
    """
    if backend not in ("auto", "faiss", "torch"):
        raise UsageError(f"unknown search backend {backend!r}", hint="use auto, faiss or torch")
    if device == "auto":
        target = "cuda" if _cuda_possible() else "cpu"
    elif device == "cpu":
        target = "cpu"
    else:
        from dmlbench.utils.device import resolve_device

        target = str(resolve_device(device))  # DeviceError when CUDA is asked for but absent
    if backend == "torch":
        return BackendChoice("torch", target)
    gpu = target.startswith("cuda")
    if backend == "faiss":
        if not faiss_available():
            raise EnvironmentFailure(
                "the faiss backend was asked for, but faiss is not installed",
                hint="pip install faiss-cpu (or faiss-gpu-cu12 on a CUDA machine), or use the torch backend",
            )
        if gpu and faiss_gpu_count() == 0:
            raise DeviceError(
                "faiss on CUDA was asked for, but this faiss build sees no GPU",
                hint="install faiss-gpu-cu12 (pip install -e .[gpu]) or use the torch backend on CUDA",
            )
        if gpu and k > FAISS_GPU_MAX_K:
            raise UsageError(
                f"faiss-gpu retrieves at most {FAISS_GPU_MAX_K} neighbours, {k} are needed",
                hint="use the torch backend on CUDA (the default with --device cuda), or smaller K",
            )
        return BackendChoice("faiss", target)
    if gpu:
        if faiss_gpu_count() > 0 and k <= FAISS_GPU_MAX_K:
            return BackendChoice("faiss", target)
        return BackendChoice("torch", target)
    return BackendChoice("faiss" if faiss_available() else "torch", target)


def build_backend(choice: BackendChoice, gallery: FloatMatrix, distance: Distance) -> SearchBackend:
    """Instantiate the search backend of `choice` over `gallery`."""
    if choice.library == "faiss":
        return FaissBackend(gallery, distance, gpu=choice.gpu)
    return TorchBackend(gallery, distance, device=choice.torch_device())


def _order(
    scores: FloatMatrix, indices: IndexMatrix, self_ids: IndexMatrix | None, *, presorted: bool
) -> tuple[FloatMatrix, IndexMatrix]:
    """Order rows by (score desc, index asc) and remove each query's own index.

    When a row does not hold its own index (duplicates outranked it), its weakest item goes instead,
    so every row loses one column. `presorted` rows already come by descending score (every
    backend's top-k does), so only rows holding an exact tie need the lexicographic sort.
    """
    m, width = scores.shape
    if not presorted:
        order = np.lexsort((indices, -scores), axis=1)
        scores = np.take_along_axis(scores, order, axis=1)
        indices = np.take_along_axis(indices, order, axis=1)
    if self_ids is not None:
        keep = indices != self_ids[:, None]
        keep[keep.all(axis=1), -1] = False
        scores, indices = scores[keep].reshape(m, width - 1), indices[keep].reshape(m, width - 1)
    if presorted:
        tied = np.flatnonzero((scores[:, 1:] == scores[:, :-1]).any(axis=1))
        if tied.size:
            sub_scores, sub_indices = scores[tied], indices[tied]
            order = np.lexsort((sub_indices, -sub_scores), axis=1)
            scores, indices = scores.copy(), indices.copy()
            scores[tied] = np.take_along_axis(sub_scores, order, axis=1)
            indices[tied] = np.take_along_axis(sub_indices, order, axis=1)
    return scores, indices


def _full_rows(
    backend: SearchBackend, queries: FloatMatrix, self_ids: IndexMatrix | None, k: int
) -> tuple[FloatMatrix, IndexMatrix]:
    """Exact ordered top-k computed from whole score rows (for rows whose ties reach the boundary)."""
    out_scores: list[FloatMatrix] = []
    out_indices: list[IndexMatrix] = []
    for start in range(0, queries.shape[0], _FULL_ROW_CHUNK):
        block = queries[start : start + _FULL_ROW_CHUNK]
        scores = backend.full_scores(block)
        indices = np.broadcast_to(np.arange(backend.size, dtype=np.int64), scores.shape).copy()
        ids = None if self_ids is None else self_ids[start : start + _FULL_ROW_CHUNK]
        scores, indices = _order(scores, indices, ids, presorted=False)
        out_scores.append(scores[:, :k])
        out_indices.append(indices[:, :k])
    return np.concatenate(out_scores), np.concatenate(out_indices)


def iter_neighbours(
    backend: SearchBackend,
    queries: FloatMatrix,
    k: int,
    *,
    exclude_self: bool,
    tile_size: int = 2048,
    query_ids: IndexMatrix | None = None,
) -> Iterator[tuple[int, int, FloatMatrix, IndexMatrix]]:
    """Yield (start, stop, scores [T, k], gallery indices [T, k]) for consecutive query tiles.

    With `exclude_self`, query i is gallery item i (or `query_ids[i]`, when the queries are a sample of
    the gallery) and is removed by index. `k` must not exceed the number of candidates (gallery size,
    minus one with `exclude_self`).
    """
    available = backend.size - (1 if exclude_self else 0)
    if k < 1 or k > available:
        raise UsageError(
            f"cannot retrieve {k} neighbours from a gallery of {available} candidate(s)",
            hint="lower the largest --recall-k below the gallery size",
        )
    fetch = min(k + (1 if exclude_self else 0) + 1, backend.size)
    complete = fetch == backend.size
    tile = backend.max_tile(tile_size)
    for start in range(0, queries.shape[0], tile):
        stop = min(start + tile, queries.shape[0])
        block = queries[start:stop]
        self_ids = None
        if exclude_self:
            self_ids = query_ids[start:stop] if query_ids is not None else np.arange(start, stop, dtype=np.int64)
        scores, indices = backend.search(block, fetch)
        scores, indices = _order(scores, indices, self_ids, presorted=True)
        if not complete:
            straddling = np.flatnonzero(scores[:, k - 1] == scores[:, k])
            if straddling.size:
                ids = None if self_ids is None else self_ids[straddling]
                fixed_scores, fixed_indices = _full_rows(backend, block[straddling], ids, k)
                scores, indices = scores[:, :k].copy(), indices[:, :k].copy()
                scores[straddling], indices[straddling] = fixed_scores, fixed_indices
        yield start, stop, scores[:, :k], indices[:, :k]


def knn(
    queries: FloatMatrix,
    gallery: FloatMatrix | None,
    k: int,
    *,
    distance: Distance = "cosine",
    device: str = "cpu",
    backend: BackendName = "auto",
    tile_size: int = 2048,
) -> tuple[FloatMatrix, IndexMatrix, str]:
    """All k nearest neighbours at once (small inputs, tests): (scores, indices, backend name).

    `gallery=None` searches `queries` against themselves with each query excluded by index. Inputs are
    used as given (normalise first for cosine).
    """
    exclude_self = gallery is None
    base = queries if gallery is None else gallery
    engine = build_backend(choose_backend(device, backend, k=k + 2), base, distance)
    parts = list(iter_neighbours(engine, queries, k, exclude_self=exclude_self, tile_size=tile_size))
    return np.concatenate([p[2] for p in parts]), np.concatenate([p[3] for p in parts]), engine.name
