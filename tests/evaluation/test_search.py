"""kNN search: self exclusion by index, deterministic ties, tiling, backend agreement and choice."""

from __future__ import annotations

import numpy as np
import pytest

from dmlbench.errors import DeviceError, EnvironmentFailure
from dmlbench.evaluation import evaluate_embeddings
from dmlbench.evaluation import search as S

BACKENDS = ["faiss", "torch"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_self_is_removed_by_index_among_duplicates(backend: str) -> None:
    x = np.zeros((6, 4), dtype=np.float32)  # six identical vectors: every score ties
    _, idx, _ = S.knn(x, None, 5, distance="euclidean", device="cpu", backend=backend)
    for q in range(6):
        assert idx[q].tolist() == [j for j in range(6) if j != q]


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_straddling_the_fetched_boundary_are_resolved_by_index(backend: str) -> None:
    # query 0 has four neighbours at distance 1 (indices 1..4) but only k=2 are kept: the first two
    # by index must win, whatever order the backend's top-k selection returned
    x = np.array([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1], [10, 10], [20, 20]], dtype=np.float32)
    perm = np.array([0, 4, 3, 2, 1, 5, 6])
    _, idx, _ = S.knn(x[perm], None, 2, distance="euclidean", device="cpu", backend=backend)
    assert idx[0].tolist() == [1, 2]
    _, idx, _ = S.knn(x, x, 3, distance="euclidean", device="cpu", backend=backend)
    assert idx[0].tolist() == [0, 1, 2]  # query vs gallery: nothing is excluded


class HighestIndexFirst(S.SearchBackend):
    """An exact backend whose top-k selection keeps the *highest* indices of a tie run."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = self.full_scores(queries)
        ids = np.broadcast_to(np.arange(self.size), scores.shape)
        order = np.lexsort((-ids, -scores), axis=1)[:, :k]
        return np.take_along_axis(scores, order, axis=1), order.astype(np.int64)


def test_tie_order_does_not_depend_on_the_backends_selection() -> None:
    x = np.array([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1], [10, 10], [20, 20]], dtype=np.float32)
    engine = HighestIndexFirst(x, "euclidean")
    raw = engine.search(x[:1], 4)[1][0].tolist()
    assert raw == [0, 4, 3, 2]  # the backend alone would keep 4 and 3
    [(_, _, _, idx)] = list(S.iter_neighbours(engine, x, 2, exclude_self=True))
    assert idx[0].tolist() == [1, 2]
    assert idx[6].tolist() == [5, 1]  # (20,20): (10,10) at 200, then (1,0) and (0,1) tie at 761 -> index 1


def test_backends_agree_exactly_on_integer_data() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, size=(300, 3)).astype(np.float32)
    faiss_scores, faiss_idx, _ = S.knn(x, None, 20, distance="euclidean", device="cpu", backend="faiss", tile_size=64)
    torch_scores, torch_idx, _ = S.knn(x, None, 20, distance="euclidean", device="cpu", backend="torch", tile_size=37)
    assert np.array_equal(faiss_idx, torch_idx)
    assert np.array_equal(faiss_scores, torch_scores)


def test_backends_agree_on_random_cosine_metrics() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 32)).astype(np.float32)
    y = rng.integers(0, 40, size=500)
    runs = [
        evaluate_embeddings(x, y, recall_k=(1, 10, 100), device="cpu", backend=b, metrics=["recall", "map@r"])
        for b in BACKENDS
    ]
    assert runs[0].metrics == pytest.approx(runs[1].metrics, abs=1e-12)
    assert runs[0].backend.startswith("faiss-cpu") and runs[1].backend.startswith("torch-cpu")


@pytest.mark.parametrize("backend", BACKENDS)
def test_tiles_cover_every_query_once(backend: str) -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(103, 8)).astype(np.float32)
    engine = S.build_backend(S.choose_backend("cpu", backend), x, "euclidean")  # type: ignore[arg-type]
    tiles = list(S.iter_neighbours(engine, x, 5, exclude_self=True, tile_size=25))
    assert [(start, stop) for start, stop, _, _ in tiles] == [(0, 25), (25, 50), (50, 75), (75, 100), (100, 103)]
    assert all(idx.shape == (stop - start, 5) for start, stop, _, idx in tiles)


def test_torch_tiles_are_bounded_by_gallery_size() -> None:
    engine = S.TorchBackend(
        np.zeros((1 << 20, 2), dtype=np.float32), "cosine", device=__import__("torch").device("cpu")
    )
    assert engine.max_tile(2048) == 64  # 2**26 scores per tile / 2**20 gallery items


def test_asking_for_missing_hardware_or_library_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(DeviceError):
            S.choose_backend("cuda")
    monkeypatch.setattr(S, "faiss_available", lambda: False)
    assert S.choose_backend("cpu").library == "torch"  # auto without faiss: torch, by design
    with pytest.raises(EnvironmentFailure, match="faiss is not installed"):
        S.choose_backend("cpu", "faiss")


@pytest.mark.gpu
def test_cuda_backends_agree_with_cpu() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 150, size=2000)
    x = (rng.normal(size=(150, 64))[y] + 0.8 * rng.normal(size=(2000, 64))).astype(np.float32)
    cpu = evaluate_embeddings(x, y, recall_k=(1, 10, 100), device="cpu", backend="faiss")
    gpu = evaluate_embeddings(x, y, recall_k=(1, 10, 100), device="cuda", backend="torch")
    assert gpu.backend.startswith("torch-cuda")
    for key in ("recall@1", "recall@10", "recall@100", "precision@1", "r_precision", "map@r"):
        assert gpu.metrics[key] == pytest.approx(cpu.metrics[key], abs=2e-3)  # float32 near-ties only
    assert gpu.metrics["nmi"] == pytest.approx(cpu.metrics["nmi"], abs=0.05)  # different k-means inits
    grid = rng.integers(0, 3, size=(500, 3)).astype(np.float32)
    _, cpu_idx, _ = S.knn(grid, None, 30, distance="euclidean", device="cpu", backend="torch")
    _, gpu_idx, _ = S.knn(grid, None, 30, distance="euclidean", device="cuda", backend="torch")
    assert np.array_equal(cpu_idx, gpu_idx)


def test_importing_and_the_faiss_cpu_path_do_not_load_torch() -> None:
    # torch next to faiss-cpu loads a second OpenMP runtime that slows faiss; the CPU path avoids it
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "import dmlbench.evaluation as E\n"
        "assert 'torch' not in sys.modules and 'faiss' not in sys.modules\n"
        "x = np.random.default_rng(0).normal(size=(50, 4)).astype('float32')\n"
        "out = E.evaluate_embeddings(x, np.arange(50) % 5, device='cpu')\n"
        "assert out.backend.startswith('faiss-cpu'), out.backend\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_evaluation_never_imports_training() -> None:
    import ast
    from pathlib import Path

    import dmlbench.evaluation

    imported: set[str] = set()
    for path in Path(dmlbench.evaluation.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
    assert "dmlbench.models" in imported  # the walk sees the lazy imports inside functions too
    assert not [name for name in imported if name.startswith("dmlbench.training")]
