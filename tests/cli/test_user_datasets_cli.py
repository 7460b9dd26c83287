"""`prepare PATH` and `--dataset PATH|NAME` end to end: a 12-class PNG folder trains with no other flags, and
an OML CSV's query/gallery protocol with sequences scores exactly as a brute-force numpy computation."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dmlbench.cli import app
from dmlbench.datasets import open_prepared
from dmlbench.rundir import RunDir

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "datasets"))
from user_images import write_folder, write_oml_csv  # noqa: E402

runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    monkeypatch.chdir(tmp_path)
    write_folder(tmp_path / "pngs")
    return str(tmp_path / "data"), str(tmp_path / "runs")


def test_prepare_then_train_by_name_with_no_other_flags(roots: tuple[str, str]) -> None:
    data_root, runs_root = roots
    output = invoke("prepare", "./pngs", "--data-root", data_root)
    assert "use --dataset pngs" in output and "train" in output and "test" in output
    invoke("train", "--dataset", "pngs", "--epochs", "1", "--data-root", data_root, "--runs-root", runs_root)
    run = RunDir(Path(runs_root) / "pngs-clustering-small_cnn-seed0")
    metrics = json.loads(run.metrics_path("test").read_text())["metrics"]
    assert 0 <= metrics["recall@1"] <= 1
    assert run.read_manifest().dataset.train_test_disjoint is True  # type: ignore[union-attr]


def test_train_with_a_path_prepares_it_first(roots: tuple[str, str]) -> None:
    data_root, runs_root = roots
    output = invoke("train", "--dataset", "./pngs", "--epochs", "1", "--data-root", data_root, "--runs-root", runs_root)
    assert "pngs-clustering-small_cnn-seed0" in output
    assert open_prepared("pngs", data_root).info["splits"]["train"]["classes"] == 6


def test_bench_with_a_folder(roots: tuple[str, str]) -> None:
    data_root, runs_root = roots
    output = invoke(
        "bench",
        "--datasets",
        "./pngs",
        "--losses",
        "triplet",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--data-root",
        data_root,
        "--runs-root",
        runs_root,
        "--quiet",
    )
    assert "| triplet" in output


def brute_force(
    queries: np.ndarray,
    q_labels: np.ndarray,
    q_groups: np.ndarray,
    gallery: np.ndarray,
    g_labels: np.ndarray,
    g_groups: np.ndarray,
    ks: list[int],
) -> dict[str, float]:
    """Recall@K and MAP@R by definition: cosine, ties by gallery index, same-group items are no candidates."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    hits = {k: [] for k in ks}
    maps = []
    for i in range(len(q)):
        candidates = np.flatnonzero(g_groups != q_groups[i])
        sims = g[candidates] @ q[i]
        order = candidates[np.lexsort((candidates, -sims))]
        relevant = g_labels[order] == q_labels[i]
        r = int(relevant.sum())
        if r == 0:
            continue
        for k in ks:
            hits[k].append(bool(relevant[:k].any()))
        top = relevant[:r]
        precision = np.cumsum(top) / np.arange(1, r + 1)
        maps.append(float((precision * top).sum() / r))
    values = {f"recall@{k}": float(np.mean(hits[k])) for k in ks}
    values["map@r"] = float(np.mean(maps))
    return values


def test_oml_csv_query_gallery_with_sequences_matches_brute_force(tmp_path: Path) -> None:
    csv = write_oml_csv(tmp_path / "oml", val_classes=5, per_class=8)
    data_root, runs_root = str(tmp_path / "data"), str(tmp_path / "runs")
    invoke("prepare", str(csv), "--data-root", data_root)
    invoke("train", "--dataset", "df", "--epochs", "1", "--data-root", data_root, "--runs-root", runs_root, "--no-eval")
    run = Path(runs_root) / "df-clustering-small_cnn-seed0"
    invoke("evaluate", str(run), "--save-embeddings", "--data-root", data_root, "--device", "cpu")
    stored = RunDir(run)
    record = json.loads(stored.metrics_path("test").read_text())
    index = open_prepared("df", data_root).index
    query_rows, gallery_rows = index[index["split"] == "query"], index[index["split"] == "gallery"]
    expected = brute_force(
        np.load(stored.embeddings_path("test")),
        query_rows["label"].to_numpy(),
        query_rows["sequence"].to_numpy(),
        np.load(stored.embeddings_path("test", gallery=True)),
        gallery_rows["label"].to_numpy(),
        gallery_rows["sequence"].to_numpy(),
        list(record["recall_k"]),
    )
    for key, value in expected.items():
        assert record["metrics"][key] == pytest.approx(value, abs=1e-6), key
    # the exclusion matters here: without it, a query's own gallery row and its sequence would be found
    no_groups = brute_force(
        np.load(stored.embeddings_path("test")),
        query_rows["label"].to_numpy(),
        np.arange(len(query_rows)),
        np.load(stored.embeddings_path("test", gallery=True)),
        gallery_rows["label"].to_numpy(),
        -1 - np.arange(len(gallery_rows)),
        list(record["recall_k"]),
    )
    assert no_groups["map@r"] != pytest.approx(expected["map@r"], abs=1e-6)
