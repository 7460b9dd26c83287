"""`evaluate_files` and the other public functions that take paths: str and os.PathLike both work."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dmlbench.datasets import open_or_prepare
from dmlbench.errors import MissingInputError, UsageError
from dmlbench.evaluation import EvalOptions, evaluate, evaluate_embeddings, evaluate_files, load_trained_embedder
from dmlbench.evaluation.files import load_embeddings
from dmlbench.paths import Places

RNG = np.random.default_rng(1)
X = (np.repeat(RNG.normal(size=(5, 6)), 4, axis=0) + 0.5 * RNG.normal(size=(20, 6))).astype(np.float32)
Y = np.repeat(np.arange(5), 4)


class _PathLike:
    """An os.PathLike that is neither str nor pathlib.Path."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __fspath__(self) -> str:
        return str(self.path)


def _forms(path: Path) -> list[Any]:
    return [path, str(path), _PathLike(path)]


@pytest.fixture
def arrays(tmp_path: Path) -> Path:
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", Y)
    np.save(tmp_path / "gx.npy", X[::2])
    np.save(tmp_path / "gy.npy", Y[::2])
    np.savez(tmp_path / "gallery.npz", embeddings=X[::2], labels=Y[::2])
    return tmp_path


@pytest.mark.parametrize("form", range(3))
def test_evaluate_files_matches_evaluate_embeddings_for_every_path_type(arrays: Path, form: int) -> None:
    x, y = _forms(arrays / "x.npy")[form], _forms(arrays / "y.npy")[form]
    options = EvalOptions(recall_k=(1, 2), device="cpu")
    assert evaluate_files(x, y, options).metrics == evaluate_embeddings(X, Y, options).metrics
    assert isinstance(os.fspath(x), str)
    loaded = load_embeddings(x, y)
    assert np.array_equal(loaded.embeddings, X) and np.array_equal(loaded.labels, Y)


def test_gallery_files_give_the_query_vs_gallery_protocol(arrays: Path) -> None:
    expected = evaluate_embeddings(X, Y, device="cpu", gallery_embeddings=X[::2], gallery_labels=Y[::2])
    separate = evaluate_files(
        str(arrays / "x.npy"),
        str(arrays / "y.npy"),
        device="cpu",
        gallery_embeddings=str(arrays / "gx.npy"),
        gallery_labels=str(arrays / "gy.npy"),
    )
    container = evaluate_files(
        arrays / "x.npy", arrays / "y.npy", device="cpu", gallery_embeddings=arrays / "gallery.npz"
    )
    assert separate.protocol == container.protocol == "query vs gallery"
    assert separate.metrics == container.metrics == expected.metrics and separate.n_gallery == 10


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda d: evaluate_files(d / "x.npy", d / "short.npy"),
            UsageError,
            r"short\.npy holds 19 labels but .*x\.npy",
        ),
        (lambda d: evaluate_files(d, d / "y.npy"), UsageError, "is a folder, not an array file"),
        (lambda d: evaluate_files(d / "x.npy", d / "missing.npy"), MissingInputError, "does not exist"),
        (lambda d: evaluate_files(d / "x.npy", d / "corrupt.npy"), MissingInputError, "cannot read"),
        (lambda d: evaluate_files(d / "x.npy", d / "pickled.npy"), MissingInputError, "cannot read"),
        (lambda d: evaluate_files(d / "x.npy", d / "y.npy", gallery_labels=d / "gy.npy"), UsageError, "without"),
        (
            lambda d: evaluate_files(d / "x.npy", d / "y.npy", gallery_embeddings=d / "gx.npy"),
            UsageError,
            "no gallery labels",
        ),
        (
            lambda d: evaluate_files(
                d / "x.npy", d / "y.npy", gallery_embeddings=d / "gx.npy", gallery_labels=d / "y.npy"
            ),
            UsageError,
            r"y\.npy holds 20 labels but .*gx\.npy holds 10 rows",
        ),
        (lambda d: evaluate_files(d / "missing.npy", d / "y.npy", metrics=["recal"]), UsageError, "unknown metric"),
        (lambda d: evaluate_files(d / "x.npy", d / "y.npy", colour="red"), UsageError, "unknown evaluation option"),
    ],
)
def test_bad_files_are_one_clear_error(arrays: Path, call: Any, error: type[Exception], match: str) -> None:
    np.save(arrays / "short.npy", Y[:-1])
    (arrays / "corrupt.npy").write_bytes(b"\x93NUMPY garbage")
    np.save(arrays / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(error, match=match) as info:
        call(arrays)
    assert getattr(info.value, "hint", None)


def test_run_functions_take_str_paths(tmp_path: Path, data_root: Path, make_run: Any) -> None:
    run_dir = make_run(tmp_path, data_root)
    model, cfg = load_trained_embedder(str(run_dir), "cpu")
    assert cfg.dataset == "digits" and not model.training
    model, _ = load_trained_embedder(_PathLike(run_dir))
    result = evaluate(str(run_dir), places=Places.of(str(data_root)), device="cpu", metrics=["recall"], recall_k=[1])
    assert result.path == run_dir / "eval" / "test" / "metrics.json"
    again = evaluate(
        _PathLike(run_dir), places=Places.of(_PathLike(data_root)), device="cpu", metrics=["recall"], recall_k=[1]
    )
    assert again.metrics == result.metrics
    assert open_or_prepare("digits", Places.of(str(data_root))).root == data_root / "digits"
