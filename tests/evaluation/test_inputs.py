"""Bad input fails with a DmlbenchError carrying a hint; external embedding files load in every format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dmlbench.errors import DmlbenchError, MissingInputError, UsageError
from dmlbench.evaluation import evaluate_embeddings
from dmlbench.evaluation.files import load_embeddings

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 6)).astype(np.float32)
Y = np.repeat(np.arange(8), 5)


@pytest.mark.parametrize(
    ("embeddings", "labels", "kwargs", "match"),
    [
        (np.where(np.arange(240).reshape(40, 6) == 7, np.nan, X), Y, {}, "NaN or inf in 1 row"),
        (np.where(np.arange(240).reshape(40, 6) == 7, np.inf, X), Y, {}, "NaN or inf"),
        (X, Y[:-1], {}, "39 entries but there are 40"),
        (X, np.zeros(40, dtype=int), {}, "single class"),
        (X[:0], Y[:0], {}, "empty"),
        (X[:, 0], Y, {}, "2-D"),
        (X, Y.astype(str), {}, "not integers"),
        (np.zeros_like(X), Y, {}, "all-zero"),
        (X, Y, {"distance": "manhattan"}, "unknown distance"),
        (X, Y, {"recall_k": (0, 1)}, "K >= 1"),
        (X, Y, {"gallery_embeddings": X}, "together"),
        (X, Y, {"gallery_embeddings": X[:, :3], "gallery_labels": Y}, "dimension 6 but gallery ones 3"),
        (X, np.arange(40), {}, "no query has another item"),
    ],
)
def test_bad_input_is_a_usage_error_with_hint(
    embeddings: np.ndarray, labels: np.ndarray, kwargs: dict, match: str
) -> None:
    with pytest.raises(UsageError, match=match) as info:
        evaluate_embeddings(embeddings, labels, device="cpu", **kwargs)
    assert info.value.hint


def test_torch_tensors_and_float_labels_are_accepted() -> None:
    direct = evaluate_embeddings(X, Y, device="cpu", metrics=["recall"]).metrics
    assert (
        evaluate_embeddings(torch.from_numpy(X), torch.from_numpy(Y.astype(np.float32)), metrics=["recall"]).metrics
        == direct
    )


def test_bfloat16_tensors_are_accepted(tmp_path: Path) -> None:
    # numpy has no bfloat16: a plain .numpy() raises TypeError
    half = torch.from_numpy(X).to(torch.bfloat16)
    as_float = half.float().numpy()
    assert (
        evaluate_embeddings(half, Y, device="cpu", metrics=["recall"]).metrics
        == evaluate_embeddings(as_float, Y, device="cpu", metrics=["recall"]).metrics
    )
    torch.save({"embeddings": half, "labels": torch.from_numpy(Y)}, tmp_path / "half.pt")
    assert np.array_equal(load_embeddings(tmp_path / "half.pt").embeddings, as_float)


def test_load_npy_npz_and_pt(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", Y)
    loaded = load_embeddings(tmp_path / "x.npy", tmp_path / "y.npy")
    assert (
        np.array_equal(loaded.embeddings, X) and np.array_equal(loaded.labels, Y) and loaded.gallery_embeddings is None
    )
    np.savez(tmp_path / "both.npz", embeddings=X, labels=Y, gallery_embeddings=X[:10], gallery_labels=Y[:10])
    loaded = load_embeddings(tmp_path / "both.npz")
    assert np.array_equal(loaded.labels, Y) and loaded.gallery_labels is not None and len(loaded.gallery_labels) == 10
    torch.save({"embeddings": torch.from_numpy(X), "labels": torch.from_numpy(Y)}, tmp_path / "both.pt")
    assert np.array_equal(load_embeddings(tmp_path / "both.pt").embeddings, X)
    torch.save(torch.from_numpy(X), tmp_path / "x.pt")
    assert np.array_equal(load_embeddings(tmp_path / "x.pt", tmp_path / "y.npy").embeddings, X)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match="does not exist"):
        load_embeddings(tmp_path / "missing.npy", tmp_path / "y.npy")
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    np.save(tmp_path / "y.npy", Y)
    with pytest.raises(MissingInputError, match="cannot read"):
        load_embeddings(tmp_path / "bad.npy", tmp_path / "y.npy")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(MissingInputError, match="cannot read"):
        load_embeddings(tmp_path / "bad.pt", tmp_path / "y.npy")
    with pytest.raises(UsageError, match="unsupported file type"):
        load_embeddings(_touch(tmp_path / "e.csv"), tmp_path / "y.npy")
    np.save(tmp_path / "x.npy", X)
    with pytest.raises(UsageError, match="no labels were given"):
        load_embeddings(tmp_path / "x.npy")
    np.savez(tmp_path / "named.npz", feats=X, targets=Y)
    with pytest.raises(UsageError, match="no array named 'embeddings'"):
        load_embeddings(tmp_path / "named.npz")
    torch.save({"weights": [1, 2]}, tmp_path / "obj.pt")
    with pytest.raises(DmlbenchError):
        load_embeddings(tmp_path / "obj.pt", tmp_path / "y.npy")


def _touch(path: Path) -> Path:
    path.write_text("1,2\n")
    return path
