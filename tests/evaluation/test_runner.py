"""`evaluate(run_dir)` end to end: a prepared dataset on disk, a real tiny model, metrics.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from dmlbench.errors import MissingInputError, RunIncompleteError, UsageError
from dmlbench.evaluation import evaluate, evaluate_embeddings
from dmlbench.evaluation.embed import embed_dataset
from dmlbench.events import Event
from dmlbench.paths import Places
from dmlbench.utils.io import sha256_file


def test_evaluate_writes_metrics_json(tmp_path: Path, data_root: Path, make_run: Any) -> None:
    run_dir = make_run(tmp_path, data_root)
    events: list[Event] = []
    result = evaluate(run_dir, places=Places.of(data_root), device="cpu", save_embeddings=True, on_event=events.append)
    assert result.path == run_dir / "eval" / "test" / "metrics.json"
    body = json.loads(result.path.read_text())
    assert body["schema_version"] == 1 and body["run_id"] == "digits-test-run" and body["split"] == "test"
    assert body["recall_k"] == [1, 2, 4, 8]  # from the dataset's catalog entry
    assert list(body["metrics"]) == [
        "recall@1",
        "recall@2",
        "recall@4",
        "recall@8",
        "precision@1",
        "r_precision",
        "map@r",
        "nmi",
        "f1",
    ]
    assert body["n_queries"] == body["n_gallery"] == 896 and body["lone_queries"] == 0
    assert body["protocol"] == "query=gallery, self excluded by index" and body["embedding_dim"] == 16
    assert all(0.0 <= v <= 1.0 for v in body["metrics"].values())
    # the saved embeddings reproduce the written metrics through the public function
    emb = np.load(run_dir / "eval" / "test" / "embeddings.npy")
    labels = np.load(run_dir / "eval" / "test" / "labels.npy")
    assert emb.shape == (896, 16) and set(np.unique(labels)) == {5, 6, 7, 8, 9}
    again = evaluate_embeddings(emb, labels, device="cpu", seed=0)
    assert again.metrics == pytest.approx(body["metrics"])
    tasks = {e.task for e in events if e.kind == "finish"}
    assert "embed test" in tasks and "k-means k=5" in tasks and any(t.startswith("search k=") for t in tasks)
    assert not list((run_dir / "eval" / "test").glob(".*.tmp"))


def test_val_split_needs_held_out_classes(tmp_path: Path, data_root: Path, make_run: Any) -> None:
    with pytest.raises(UsageError, match="no validation split"):
        evaluate(make_run(tmp_path / "a", data_root), split="val", places=Places.of(data_root), device="cpu")
    run_dir = make_run(tmp_path / "b", data_root, manifest_extra={"val_classes": [3, 4]})
    result = evaluate(
        run_dir, split="val", places=Places.of(data_root), device="cpu", metrics=["recall"], recall_k=[1, 2]
    )
    body = json.loads(result.path.read_text())
    assert body["split"] == "val" and list(body["metrics"]) == ["recall@1", "recall@2"]
    assert 300 < body["n_queries"] < 400  # digits 3 and 4 of the train split (about 180 each)
    # without a recorded list, the classes are re-derived exactly as training holds them out
    run_dir = make_run(tmp_path / "c", data_root, val_classes=0.4)
    result = evaluate(run_dir, split="val", places=Places.of(data_root), device="cpu", metrics=["recall"], recall_k=[1])
    train_labels = np.arange(5)  # digits' train classes 0-4
    held_out = np.random.default_rng(0).choice(train_labels, size=2, replace=False)
    index = pd.read_csv(data_root / "digits" / "index.csv")
    expected = int(((index["split"] == "train") & index["label"].isin(held_out)).sum())
    assert json.loads(result.path.read_text())["n_queries"] == expected


def test_missing_incomplete_and_damaged_runs(tmp_path: Path, data_root: Path, make_run: Any) -> None:
    with pytest.raises(MissingInputError, match="does not exist"):
        evaluate(tmp_path / "nope", places=Places.of(data_root), device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunIncompleteError, match="no manifest"):
        evaluate(tmp_path / "empty", places=Places.of(data_root), device="cpu")
    with pytest.raises(RunIncompleteError, match="running"):
        evaluate(make_run(tmp_path / "r", data_root, status="running"), places=Places.of(data_root), device="cpu")
    wrong_dim = make_run(tmp_path / "d", data_root, embedding_dim=32, saved_dim=16)
    with pytest.raises(MissingInputError, match="cannot load") as info:
        evaluate(wrong_dim, places=Places.of(data_root), device="cpu")
    assert info.value.hint
    corrupt = make_run(tmp_path / "c", data_root)
    (corrupt / "train" / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(MissingInputError):
        evaluate(corrupt, places=Places.of(data_root), device="cpu")
    with pytest.raises(UsageError, match="unknown split"):
        evaluate(corrupt, split="train", places=Places.of(data_root), device="cpu")


class _Images(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    def __init__(self, n: int, channels: int) -> None:
        self.n, self.channels = n, channels

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.full((self.channels, 4, 4), float(i)), i % 3


def test_embed_dataset_batches_in_order_and_rejects_wrong_input_shapes() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.Flatten(1), torch.nn.Linear(32, 5))
    emb, labels = embed_dataset(model, _Images(10, 3), device=torch.device("cpu"), batch_size=4)
    assert emb.shape == (10, 5) and emb.dtype == np.float32 and labels.tolist() == [i % 3 for i in range(10)]
    with torch.no_grad():
        expected = model(torch.stack([_Images(10, 3)[i][0] for i in range(10)])).numpy()
    np.testing.assert_allclose(emb, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(UsageError, match="cannot embed"):
        embed_dataset(model, _Images(4, 1), device=torch.device("cpu"))
    with pytest.raises(UsageError, match="empty"):
        embed_dataset(model, _Images(0, 3), device=torch.device("cpu"))


def test_query_gallery_dataset_searches_the_gallery(tmp_path: Path, data_root: Path, make_run: Any) -> None:
    import shutil

    import pandas as pd

    # an In-Shop-like copy of digits: the test rows alternate between query and gallery
    root = tmp_path / "data"
    shutil.copytree(data_root / "digits", root / "digits")
    index = pd.read_csv(root / "digits" / "index.csv")
    test_rows = np.flatnonzero(index["split"] == "test")
    index.loc[test_rows[0::2], "split"] = "query"
    index.loc[test_rows[1::2], "split"] = "gallery"
    index.to_csv(root / "digits" / "index.csv", index=False)
    info = json.loads((root / "digits" / "prepared.json").read_text())
    info["index_sha256"] = sha256_file(root / "digits" / "index.csv")
    (root / "digits" / "prepared.json").write_text(json.dumps(info))
    events: list[Event] = []
    result = evaluate(make_run(tmp_path, data_root), places=Places.of(root), device="cpu", on_event=events.append)
    body = json.loads(result.path.read_text())
    assert body["protocol"] == "query vs gallery"
    assert body["n_queries"] == 448 and body["n_gallery"] == 448
    assert any("re-prepared" in e.message for e in events)  # the index no longer matches the run's fingerprint
