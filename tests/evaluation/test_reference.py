"""Every metric against a brute-force numpy reference: full distance matrix, stable sort by index."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from dmlbench.evaluation import evaluate_embeddings
from dmlbench.evaluation.clustering import kmeans_faiss

KS = (1, 2, 4, 8, 16)


def reference(
    queries: np.ndarray,
    labels: np.ndarray,
    gallery: np.ndarray | None,
    gallery_labels: np.ndarray | None,
    distance: str,
) -> tuple[dict[str, float], int]:
    """Straightforward per-query loops over a full float64 distance matrix."""
    separate = gallery is not None
    g = gallery if separate else queries
    gl = gallery_labels if separate else labels
    q64, g64 = queries.astype(np.float64), g.astype(np.float64)
    if distance == "cosine":
        q64 = q64 / np.linalg.norm(q64, axis=1, keepdims=True)
        g64 = g64 / np.linalg.norm(g64, axis=1, keepdims=True)
        dist = -(q64 @ g64.T)
    else:
        dist = ((q64[:, None, :] - g64[None, :, :]) ** 2).sum(axis=2)
    hits = {k: [] for k in KS}
    p1, rprec, mapr, lone = [], [], [], 0
    for i in range(len(queries)):
        candidates = [j for j in range(len(g)) if separate or j != i]
        order = sorted(candidates, key=lambda j: (dist[i, j], j))
        rel = [gl[j] == labels[i] for j in order]
        r = sum(rel)
        if r == 0:
            lone += 1
            continue
        for k in KS:
            hits[k].append(any(rel[:k]))
        p1.append(rel[0])
        rprec.append(sum(rel[:r]) / r)
        ap, found = 0.0, 0
        for pos in range(r):
            if rel[pos]:
                found += 1
                ap += found / (pos + 1)
        mapr.append(ap / r)
    out = {f"recall@{k}": float(np.mean(hits[k])) for k in KS}
    out.update({"precision@1": float(np.mean(p1)), "r_precision": float(np.mean(rprec)), "map@r": float(np.mean(mapr))})
    return out, lone


def _clustered(rng: np.random.Generator, n: int, classes: int, dim: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, classes, size=n)
    centres = rng.normal(size=(classes, dim))
    return (centres[labels] + noise * rng.normal(size=(n, dim))).astype(np.float32), labels


@pytest.mark.parametrize("backend", ["faiss", "torch"])
@pytest.mark.parametrize("seed", [0, 1])
def test_cosine_matches_reference(backend: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, y = _clustered(rng, 240, 30, 12, 1.0)  # some classes end up with one item: lone queries
    out = evaluate_embeddings(
        x,
        y,
        recall_k=KS,
        metrics=["recall", "precision@1", "r_precision", "map@r"],
        device="cpu",
        backend=backend,
        tile_size=64,
    )
    expected, lone = reference(x, y, None, None, "cosine")
    assert out.lone_queries == lone
    assert out.metrics == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_euclidean_integer_grid_with_many_exact_ties(backend: str) -> None:
    # coordinates in {0,1,2}^3: 27 positions for 200 points, so nearly every neighbour list is a tie run
    rng = np.random.default_rng(7)
    x = rng.integers(0, 3, size=(200, 3)).astype(np.float32)
    y = rng.integers(0, 12, size=200)
    out = evaluate_embeddings(
        x,
        y,
        recall_k=KS,
        metrics=["recall", "precision@1", "r_precision", "map@r"],
        device="cpu",
        distance="euclidean",
        backend=backend,
        tile_size=50,
    )
    expected, lone = reference(x, y, None, None, "euclidean")
    assert out.lone_queries == lone
    assert out.metrics == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_query_vs_gallery_matches_reference(backend: str) -> None:
    rng = np.random.default_rng(3)
    x, y = _clustered(rng, 300, 25, 10, 1.2)
    q, qy, g, gy = x[:100], y[:100], x[100:], y[100:]
    qy = qy.copy()
    qy[0] = 999  # a query whose class is absent from the gallery: lone
    out = evaluate_embeddings(
        q,
        qy,
        recall_k=KS,
        metrics=["recall", "precision@1", "r_precision", "map@r"],
        device="cpu",
        gallery_embeddings=g,
        gallery_labels=gy,
        backend=backend,
    )
    expected, lone = reference(q, qy, g, gy, "cosine")
    assert lone >= 1 and out.lone_queries == lone
    assert out.n_gallery == 200 and out.protocol == "query vs gallery"
    assert out.metrics == pytest.approx(expected, abs=1e-12)


def test_clustering_metrics_match_sklearn_on_the_same_clustering() -> None:
    rng = np.random.default_rng(5)
    x = rng.integers(-4, 5, size=(300, 6)).astype(np.float32)  # euclidean: no normalisation in between
    y = rng.integers(0, 10, size=300)
    out = evaluate_embeddings(
        x, y, metrics=["nmi", "f1"], device="cpu", distance="euclidean", backend="faiss", kmeans_niter=10, seed=3
    )
    clusters = kmeans_faiss(x, 10, niter=10, nredo=1, seed=3)
    assert out.metrics["nmi"] == pytest.approx(normalized_mutual_info_score(y, clusters), abs=1e-12)
    same_cluster = clusters[:, None] == clusters[None, :]
    same_class = y[:, None] == y[None, :]
    upper = np.triu(np.ones_like(same_class), k=1)
    tp = (same_cluster & same_class & upper).sum()
    precision, recall = tp / (same_cluster & upper).sum(), tp / (same_class & upper).sum()
    assert out.metrics["f1"] == pytest.approx(2 * precision * recall / (precision + recall), abs=1e-12)


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_clustering_recovers_separated_classes(backend: str) -> None:
    rng = np.random.default_rng(2)
    x, y = _clustered(rng, 400, 8, 16, 0.05)
    out = evaluate_embeddings(x, y, metrics=["nmi", "f1"], device="cpu", backend=backend, kmeans_nredo=10)
    assert out.metrics["nmi"] > 0.95 and out.metrics["f1"] > 0.9


def test_seeded_kmeans_is_reproducible() -> None:
    rng = np.random.default_rng(4)
    x, y = _clustered(rng, 300, 20, 8, 1.0)
    first = evaluate_embeddings(x, y, metrics=["nmi", "f1"], device="cpu", seed=11).metrics
    again = evaluate_embeddings(x, y, metrics=["nmi", "f1"], device="cpu", seed=11).metrics
    assert first == again
