"""`dmlbench embed`: the vectors evaluation computes, in one file that `evaluate --embeddings` scores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dmlbench.inference.embed import embed_images, embed_split, load_run_model, read_embeddings
from dmlbench.paths import Places

from .helpers import invoke


def _glyph_pngs(data_root: Path, folder: Path, n: int = 6) -> tuple[list[int], list[int]]:
    """The first `n` glyphs of the test split as PNG files in class subfolders; (their rows, their labels)."""
    from dmlbench.datasets import open_prepared

    prepared = open_prepared("glyphs", data_root)
    pixels = np.load(prepared.root / "images.npy")
    rows = prepared.split("test").iloc[:n]
    positions = [int(p.split("#")[1]) for p in rows["path"]]
    for i, (position, label) in enumerate(zip(positions, rows["label"], strict=True)):
        target = folder / f"glyph-{label:03d}" / f"{i}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[position]).save(target)
    return positions, rows["label"].tolist()


def test_split_embeddings_are_the_ones_evaluate_saves(glyphs_run: Path, glyphs_root: Path, tmp_path: Path) -> None:
    from dmlbench.evaluation import evaluate

    run = tmp_path / "run"
    shutil.copytree(glyphs_run, run)
    evaluate(run, places=Places.of(glyphs_root), device="cpu", metrics=["recall"], recall_k=[1], save_embeddings=True)
    result = embed_split(load_run_model(run, "cpu"), "glyphs", "test", places=Places.of(glyphs_root))
    assert np.array_equal(result.embeddings, np.load(run / "eval" / "test" / "embeddings.npy"))
    assert result.labels is not None
    assert np.array_equal(result.labels, np.load(run / "eval" / "test" / "labels.npy"))


@pytest.mark.slow  # two embeddings and full scorings of 3,500 glyphs: about 35 s on a busy 2-core machine
def test_embed_then_evaluate_gives_exactly_the_metrics_of_evaluate(
    glyphs_run: Path, glyphs_root: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(glyphs_run, run)
    out = tmp_path / "test.npz"
    done = invoke("embed", str(run), "--dataset", "glyphs", "--split", "test", "-o", str(out),
                  "--data-root", str(glyphs_root), "--device", "cpu")  # fmt: skip
    assert done.exit_code == 0, done.stderr
    from_file = invoke("evaluate", "--embeddings", str(out), "--json", "--device", "cpu")
    from_run = invoke("evaluate", str(run), "--json", "--data-root", str(glyphs_root), "--device", "cpu")
    assert from_file.exit_code == 0 and from_run.exit_code == 0, from_file.stderr + from_run.stderr
    assert json.loads(from_file.stdout)["metrics"] == json.loads(from_run.stdout)["metrics"]  # exactly
    loaded = read_embeddings(out)
    assert loaded.meta["run_id"] == "run" and loaded.meta["source"]["split"] == "test"
    assert len(loaded.paths) == loaded.embeddings.shape[0] == 3500 and loaded.labels is not None


def test_image_files_get_the_evaluation_preprocessing(glyphs_run: Path, glyphs_root: Path, tmp_path: Path) -> None:
    positions, labels = _glyph_pngs(glyphs_root, tmp_path / "images")
    model = load_run_model(glyphs_run, "cpu")
    images = embed_images(model, tmp_path / "images", places=Places.of(glyphs_root))
    split = embed_split(model, "glyphs", "test", places=Places.of(glyphs_root))
    # PNG round trip of the prepared pixels: the same model input, so the same vectors
    np.testing.assert_allclose(images.embeddings, split.embeddings[: len(positions)], atol=1e-6)
    assert images.class_names == sorted({f"glyph-{label:03d}" for label in labels})
    assert images.labels is not None and images.class_names is not None
    assert [images.class_names[i] for i in images.labels] == [f"glyph-{label:03d}" for label in labels]


def test_csv_paths_relative_to_the_csv_and_text_labels(glyphs_run: Path, glyphs_root: Path, tmp_path: Path) -> None:
    _glyph_pngs(glyphs_root, tmp_path / "images", n=3)
    files = sorted((tmp_path / "images").rglob("*.png"))
    listing = tmp_path / "list.csv"
    rows = [f"{f.relative_to(tmp_path)},{'ab'[i % 2]}\n" for i, f in enumerate(files)]
    listing.write_text("path,label\n" + "".join(rows))
    out = tmp_path / "csv.npz"
    done = invoke("embed", str(glyphs_run), "--images", str(listing), "-o", str(out), "--data-root", str(glyphs_root))
    assert done.exit_code == 0, done.stderr
    loaded = read_embeddings(out)
    assert loaded.paths == [str(f) for f in files]
    assert loaded.class_names == ["a", "b"] and loaded.labels is not None and loaded.labels.tolist() == [0, 1, 0]


def test_a_flat_folder_has_no_labels(glyphs_run: Path, glyphs_root: Path, tmp_path: Path) -> None:
    _glyph_pngs(glyphs_root, tmp_path / "images", n=2)
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, f in enumerate(sorted((tmp_path / "images").rglob("*.png"))):
        shutil.copy(f, flat / f"{i}.png")
    result = embed_images(load_run_model(glyphs_run, "cpu"), flat, places=Places.of(glyphs_root))
    assert result.labels is None and result.embeddings.shape == (2, 64)


def _error(done: object) -> str:
    """The one `error:` line (followed by one `hint:` line) among stderr's lines (progress bars aside)."""
    stderr: str = done.stderr  # type: ignore[attr-defined]
    lines = [line for line in stderr.splitlines() if line.startswith(("error:", "hint:", "Traceback"))]
    assert len(lines) == 2 and lines[0].startswith("error:") and lines[1].startswith("hint:"), stderr
    return lines[0]


def test_an_image_that_does_not_open_is_named(glyphs_run: Path, glyphs_root: Path, tmp_path: Path) -> None:
    _glyph_pngs(glyphs_root, tmp_path / "images", n=2)
    broken = tmp_path / "images" / "glyph-001" / "broken.png"
    broken.write_bytes(b"not a png")
    out = tmp_path / "x.npz"
    done = invoke("embed", str(glyphs_run), "--images", str(tmp_path / "images"), "-o", str(out),
                  "--data-root", str(glyphs_root))  # fmt: skip
    assert done.exit_code == 3
    assert str(broken) in _error(done)
    assert not out.exists()


def test_a_run_without_weights(glyphs_run: Path, glyphs_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(glyphs_run, run)
    (run / "train" / "model.pt").unlink()
    out = str(tmp_path / "x.npz")
    done = invoke("embed", str(run), "--dataset", "glyphs", "-o", out, "--data-root", str(glyphs_root))
    assert done.exit_code == 3
    assert "model.pt" in _error(done)


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["-o", "{tmp}/missing/x.npz", "--dataset", "glyphs"], 3, "does not exist"),
        (["-o", "{tmp}/x.npy", "--dataset", "glyphs"], 2, ".npz"),
        (["-o", "{tmp}/x.npz"], 2, "exactly one of"),
        (["-o", "{tmp}/x.npz", "--dataset", "glyphs", "--split", "nope"], 2, "no split"),
        (["-o", "{tmp}/x.npz", "--images", "{tmp}/nothing-here"], 3, "does not exist"),
    ],
)
def test_bad_inputs_are_one_error_line(
    glyphs_run: Path, glyphs_root: Path, tmp_path: Path, args: list[str], code: int, needle: str
) -> None:
    filled = [a.replace("{tmp}", str(tmp_path)) for a in args]
    done = invoke("embed", str(glyphs_run), *filled, "--data-root", str(glyphs_root))
    assert done.exit_code == code, done.stderr
    assert needle in _error(done)
    assert not list(tmp_path.rglob("*.npz"))
