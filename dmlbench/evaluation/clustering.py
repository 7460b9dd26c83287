"""k-means for the clustering metrics: faiss (CPU or GPU), or plain torch when faiss is absent.

Both run Lloyd's algorithm from `seed`, `niter` iterations, keeping the best of `nredo` restarts by
objective, on every point (faiss's default subsampling to 256 points per centroid is switched off so
the clustering covers the whole split). The two implementations draw different initial centroids, so
their clusterings agree in quality, not point for point.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    import torch

DEFAULT_NITER = 25  # faiss's default; the SOP paper's code used far more (expose via kmeans_niter)
_ASSIGN_ROWS = 4096


def kmeans_faiss(
    x: NDArray[np.float32], k: int, *, niter: int, nredo: int, seed: int, gpu: bool = False
) -> NDArray[np.int64]:
    """Cluster ids [N] from faiss.Kmeans (seeded, no subsampling)."""
    import faiss

    n, dim = x.shape
    data = np.ascontiguousarray(x, dtype=np.float32)
    km = faiss.Kmeans(
        int(dim),
        int(k),
        niter=int(niter),
        nredo=int(nredo),
        seed=int(seed),
        verbose=False,
        gpu=bool(gpu),
        # k is the class count, often n/5 or fewer points per centroid: faiss would warn and subsample
        min_points_per_centroid=1,
        max_points_per_centroid=max(int(n), 1),
    )
    km.train(data)
    _, assignment = km.index.search(data, 1)
    return assignment.reshape(-1).astype(np.int64)


def _assign(x: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid and squared distance per point, tiled so [rows, k] stays small."""
    import torch

    c_sq = (centroids * centroids).sum(dim=1)
    ids, dists = [], []
    for start in range(0, x.shape[0], _ASSIGN_ROWS):
        block = x[start : start + _ASSIGN_ROWS]
        d = (block * block).sum(dim=1, keepdim=True) - 2.0 * (block @ centroids.T) + c_sq[None, :]
        best, arg = torch.min(d, dim=1)
        ids.append(arg)
        dists.append(best.clamp_(min=0.0))
    return torch.cat(ids), torch.cat(dists)


def kmeans_torch(
    x: NDArray[np.float32], k: int, *, niter: int, nredo: int, seed: int, device: torch.device
) -> NDArray[np.int64]:
    """Cluster ids [N] from a plain torch Lloyd k-means (random distinct points as initial centroids)."""
    import torch

    data = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    n = data.shape[0]
    generator = torch.Generator().manual_seed(int(seed))
    best_ids: torch.Tensor | None = None
    best_objective = float("inf")
    with torch.no_grad():
        for _ in range(max(1, nredo)):
            centroids = data[torch.randperm(n, generator=generator)[:k].to(device)].clone()
            for _ in range(max(1, niter)):
                ids, dists = _assign(data, centroids)
                sums = torch.zeros_like(centroids).index_add_(0, ids, data)
                counts = torch.bincount(ids, minlength=k).to(data.dtype)
                centroids = sums / counts.clamp(min=1.0)[:, None]
                empty = torch.nonzero(counts == 0).reshape(-1)
                if empty.numel():
                    # an empty cluster restarts at the points worst served by their centroid
                    far = torch.topk(dists, int(empty.numel())).indices
                    centroids[empty] = data[far]
            ids, dists = _assign(data, centroids)
            objective = float(dists.sum())
            if objective < best_objective:
                best_objective, best_ids = objective, ids
    assert best_ids is not None
    return best_ids.cpu().numpy().astype(np.int64)
