"""R-Precision and MAP@R by ranks over whole score rows (large classes) against the k-NN-list path."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from dmlbench.evaluation import core, evaluate_embeddings
from dmlbench.evaluation import metrics as M
from dmlbench.events import Event

from .test_reference import _clustered, reference

R_METRICS = ["recall", "precision@1", "r_precision", "map@r"]
KS = (1, 2, 4, 8, 16)


def _both_paths(monkeypatch: pytest.MonkeyPatch, x: np.ndarray, y: np.ndarray, **options: Any) -> tuple[Any, Any]:
    """The same evaluation with the k-NN list of R neighbours, then with the rank path."""
    monkeypatch.setattr(core, "LARGE_R_MIN", 10**9)
    listed = evaluate_embeddings(x, y, recall_k=KS, metrics=R_METRICS, device="cpu", **options)
    monkeypatch.setattr(core, "LARGE_R_MIN", 0)
    ranked = evaluate_embeddings(x, y, recall_k=KS, metrics=R_METRICS, device="cpu", **options)
    return listed, ranked


def _exact_for_euclidean(x: np.ndarray, distance: str) -> np.ndarray:
    """On a 1/8 grid float32 squared distances are exact, so no near-tie flips against the float64 reference."""
    return (np.round(x * 8) / 8).astype(np.float32) if distance == "euclidean" else x


def _check(listed: Any, ranked: Any, expected: dict[str, float], lone: int) -> None:
    assert listed.lone_queries == ranked.lone_queries == lone
    assert listed.metrics == pytest.approx(expected, abs=1e-12)
    # the rank path sums MAP@R terms through harmonic numbers: equal up to float rounding
    assert ranked.metrics == pytest.approx(listed.metrics, abs=1e-10)
    assert 0.0 < ranked.metrics["map@r"] < 1.0


@pytest.mark.parametrize("backend", ["faiss", "torch"])
@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_large_classes_query_equals_gallery(monkeypatch: pytest.MonkeyPatch, backend: str, distance: str) -> None:
    rng = np.random.default_rng(11)
    x, y = _clustered(rng, 500, 3, 6, 2.5)  # ~165 items a class, heavily overlapping
    x = _exact_for_euclidean(x, distance)
    listed, ranked = _both_paths(monkeypatch, x, y, backend=backend, distance=distance)
    _check(listed, ranked, *reference(x, y, None, None, distance))


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_large_classes_query_vs_gallery_with_a_lone_query(monkeypatch: pytest.MonkeyPatch, distance: str) -> None:
    rng = np.random.default_rng(12)
    x, y = _clustered(rng, 600, 4, 8, 2.0)
    x = _exact_for_euclidean(x, distance)
    q, qy, g, gy = x[:150], y[:150].copy(), x[150:], y[150:]
    qy[3] = 77  # absent from the gallery
    listed, ranked = _both_paths(monkeypatch, q, qy, gallery_embeddings=g, gallery_labels=gy, distance=distance)
    assert ranked.protocol == "query vs gallery"
    _check(listed, ranked, *reference(q, qy, g, gy, distance))


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_exact_ties_and_duplicates_query_equals_gallery(monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    # 27 grid points for 450 items, each row also duplicated: nearly every rank sits in a tie run
    rng = np.random.default_rng(13)
    base = rng.integers(0, 3, size=(225, 3)).astype(np.float32)
    x = np.concatenate([base, base])
    y = rng.integers(0, 3, size=450)
    listed, ranked = _both_paths(monkeypatch, x, y, backend=backend, distance="euclidean", tile_size=64)
    _check(listed, ranked, *reference(x, y, None, None, "euclidean"))


def test_exact_ties_query_vs_gallery(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(14)
    g = rng.integers(-1, 2, size=(400, 2)).astype(np.float32)  # 9 positions
    gy = rng.integers(0, 4, size=400)
    q = np.concatenate([g[:60], rng.integers(-1, 2, size=(60, 2)).astype(np.float32)])  # duplicates of gallery rows
    qy = rng.integers(0, 4, size=120)
    listed, ranked = _both_paths(monkeypatch, q, qy, gallery_embeddings=g, gallery_labels=gy, distance="euclidean")
    _check(listed, ranked, *reference(q, qy, g, gy, "euclidean"))


def test_default_threshold_searches_few_neighbours_for_large_classes() -> None:
    rng = np.random.default_rng(15)
    x, y = _clustered(rng, 2 * core.LARGE_R_MIN + 400, 2, 8, 3.0)  # R ~ LARGE_R_MIN + 200
    assert int(np.bincount(y).max()) - 1 > core.LARGE_R_MIN
    events: list[Event] = []
    out = evaluate_embeddings(
        x, y, recall_k=(1, 4), metrics=R_METRICS, device="cpu", backend="faiss", on_event=events.append
    )
    started = [e.task for e in events if e.kind == "start"]
    assert started == ["search k=4", "rank R-precision/MAP@R"]
    assert 0.0 < out.metrics["map@r"] < out.metrics["r_precision"] < 1.0


def _listed_reference(
    scores: np.ndarray, query_labels: np.ndarray, gallery_labels: np.ndarray, self_cols: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whole rows ordered by (score desc, index asc), self removed, through the list-based metrics."""
    rows, width = scores.shape
    index = np.broadcast_to(np.arange(width), scores.shape)
    order = np.lexsort((index, -scores), axis=1)
    ordered = np.take_along_axis(index, order, axis=1)
    if self_cols is not None:
        ordered = ordered[ordered != self_cols[:, None]].reshape(rows, width - 1)
    relevant = gallery_labels[ordered] == query_labels[:, None]
    n_relevant = relevant.sum(axis=1)
    return n_relevant, M.r_precision(relevant, n_relevant), M.map_at_r(relevant, n_relevant)


def test_rank_metrics_when_the_sampled_threshold_misses_the_top() -> None:
    # wide rows are sampled every few columns to guess where the top R ends; here the sampled columns
    # all score far above the rest, so the guess keeps far fewer than R items and must be widened
    rng = np.random.default_rng(16)
    width = 4 * 4096
    scores = rng.normal(size=(3, width)).astype(np.float32)
    stride = width // 4096
    scores[:, ::stride] += 10.0
    gallery_labels = rng.integers(0, 2, size=width)
    query_labels = np.array([0, 1, 0])
    n_relevant, rprec, mapr = _listed_reference(scores, query_labels, gallery_labels, None)
    got = M.r_metrics_from_scores(scores, query_labels, gallery_labels, n_relevant)
    np.testing.assert_allclose(got[0], rprec, atol=1e-12)
    np.testing.assert_allclose(got[1], mapr, atol=1e-10)


def test_rank_metrics_constant_rows_signed_zeros_and_lone_rows() -> None:
    scores = np.array(
        [
            [0.5, 0.5, 0.5, 0.5, 0.5, 0.5],  # one tie run: pure index order
            [0.0, -0.0, 0.0, -0.0, 1.0, -1.0],  # -0.0 == 0.0, so they tie too
            [3.0, 2.0, 1.0, 0.0, -1.0, -2.0],
        ],
        dtype=np.float32,
    )
    gallery_labels = np.array([1, 0, 1, 1, 0, 1])
    query_labels = np.array([1, 1, 7])  # the last class is absent: lone
    self_cols = np.array([0, 3, 5])
    n_relevant, rprec, mapr = _listed_reference(scores, query_labels, gallery_labels, self_cols)
    got = M.r_metrics_from_scores(scores, query_labels, gallery_labels, n_relevant, self_cols)
    np.testing.assert_allclose(got[0], rprec, atol=1e-12)
    np.testing.assert_allclose(got[1], mapr, atol=1e-12)
    assert np.isnan(got[0][2]) and np.isnan(got[1][2])
    # row 0 without itself: 0 1 1 0 1 -> hits in the first R=3: items 2 and 3
    assert got[0][0] == pytest.approx(2 / 3) and got[1][0] == pytest.approx((1 / 2 + 2 / 3) / 3)


@pytest.mark.parametrize("seed", range(4))
def test_rank_metrics_match_sorted_rows_on_random_tables(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    rows, width = 40, 700
    # few distinct values: many exact ties between same- and other-class items
    scores = (rng.integers(-6, 7, size=(rows, width)) / 4).astype(np.float32)
    gallery_labels = rng.integers(0, 3, size=width)
    query_labels = rng.integers(0, 3, size=rows)
    self_cols = rng.permutation(width)[:rows]
    n_relevant, rprec, mapr = _listed_reference(scores, query_labels, gallery_labels, self_cols)
    got = M.r_metrics_from_scores(scores, query_labels, gallery_labels, n_relevant, self_cols)
    np.testing.assert_allclose(got[0], rprec, atol=1e-12)
    np.testing.assert_allclose(got[1], mapr, atol=1e-10)


def test_rank_path_on_faiss_cpu_does_not_load_torch() -> None:
    # torch beside faiss-cpu loads a second OpenMP runtime that slows faiss (see test_search.py)
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "import dmlbench.evaluation as E\n"
        "from dmlbench.evaluation import core\n"
        "core.LARGE_R_MIN = 0\n"
        "x = np.random.default_rng(0).normal(size=(60, 4)).astype('float32')\n"
        "events = []\n"
        "out = E.evaluate_embeddings(x, np.arange(60) % 3, device='cpu', on_event=events.append)\n"
        "assert out.backend.startswith('faiss-cpu'), out.backend\n"
        "assert any(e.task.startswith('rank') for e in events)\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_rank_path_alone_skips_the_neighbour_search() -> None:
    rng = np.random.default_rng(15)
    x, y = _clustered(rng, 2 * core.LARGE_R_MIN + 400, 2, 8, 3.0)
    events: list[Event] = []
    only_r = evaluate_embeddings(
        x, y, metrics=["r_precision", "map@r"], device="cpu", backend="faiss", on_event=events.append
    )
    assert [e.task for e in events if e.kind == "start"] == ["rank R-precision/MAP@R"]
    both = evaluate_embeddings(x, y, recall_k=(1, 4), metrics=R_METRICS, device="cpu", backend="faiss")
    assert only_r.metrics == {key: both.metrics[key] for key in ("r_precision", "map@r")}
