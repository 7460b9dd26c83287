"""`dmlbench index` / `search`: the flat index gives evaluation's exact kNN; approximate kinds and bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dmlbench.evaluation.core import _normalise
from dmlbench.evaluation.search import knn
from dmlbench.inference.embed import Embeddings, write_embeddings
from dmlbench.inference.index import IndexParams, build_index, load_index, normalise, save_index, search

from .helpers import invoke

RNG = np.random.default_rng(0)
CENTRES = RNG.normal(size=(20, 16))
GALLERY = (np.repeat(CENTRES, 40, axis=0) + 0.3 * RNG.normal(size=(800, 16))).astype(np.float32)
GALLERY[1::97] = GALLERY[0]  # exact duplicates: ties that only a deterministic order resolves
QUERIES = np.concatenate([GALLERY[:5], (CENTRES[:15] + 0.3 * RNG.normal(size=(15, 16)))]).astype(np.float32)
LABELS = np.repeat(np.arange(20), 40)


def _gallery(meta: dict[str, object] | None = None) -> Embeddings:
    return Embeddings(GALLERY, [f"g{i}.png" for i in range(len(GALLERY))], LABELS, None, meta or {})


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_flat_index_neighbours_are_evaluations_exact_knn(tmp_path: Path, distance: str) -> None:
    built = build_index(_gallery(), kind="flat", distance=distance)  # type: ignore[arg-type]
    loaded = load_index(save_index(built, tmp_path / "idx"))
    scores, positions = search(loaded, QUERIES, 10)
    if distance == "cosine":
        queries, gallery = _normalise(QUERIES, "q"), _normalise(GALLERY, "g")
        assert np.array_equal(normalise(QUERIES, "q"), queries)  # the same vectors, bit for bit
    else:
        queries, gallery = QUERIES, GALLERY
    want_scores, want_positions, _ = knn(queries, gallery, 10, distance=distance, device="cpu")  # type: ignore[arg-type]
    assert np.array_equal(positions, want_positions)
    assert np.array_equal(scores, want_scores)
    assert positions[0, 0] == 0  # a gallery item finds itself first (among its duplicates, by position)


def test_ivf_searching_every_cell_agrees_with_flat(tmp_path: Path) -> None:
    flat = build_index(_gallery(), kind="flat")
    ivf = build_index(_gallery(), kind="ivf", params=IndexParams(nlist=16, nprobe=16))
    assert ivf.meta["params"] == {"nlist": 16, "nprobe": 16}
    exact = search(flat, QUERIES, 5)[0]
    approx = search(load_index(save_index(ivf, tmp_path / "ivf")), QUERIES, 5)[0]
    # every cell visited: the same top-5 scores (tied duplicates may come in another order)
    np.testing.assert_allclose(approx, exact, atol=1e-5)


@pytest.mark.parametrize(
    ("kind", "params"),
    [("hnsw", IndexParams(m=16, ef_search=32, ef_construction=40)), ("ivfpq", IndexParams(nlist=4, m=4, nbits=4))],
)
def test_approximate_kinds_find_the_right_class(tmp_path: Path, kind: str, params: IndexParams) -> None:
    built = load_index(save_index(build_index(_gallery(), kind=kind, params=params), tmp_path / kind))
    scores, positions = search(built, QUERIES[5:], 3)
    assert positions.shape == (15, 3) and np.isfinite(scores).all()
    assert (LABELS[positions[:, 0]] == np.arange(15)).mean() >= 0.9


def test_index_and_search_through_the_cli(glyphs_run: Path, glyphs_root: Path, tmp_path: Path) -> None:
    index = tmp_path / "glyphs.index"
    done = invoke("index", str(glyphs_run), "--dataset", "glyphs", "-o", str(index), "--data-root", str(glyphs_root))
    assert done.exit_code == 0, done.stderr
    meta = json.loads((index / "index.json").read_text())
    assert meta["kind"] == "flat" and meta["size"] == 3500 and meta["dimension"] == 64
    assert meta["run"] == str(glyphs_run.resolve()) and len(meta["model_fingerprint"]) == 64
    from PIL import Image

    from dmlbench.datasets import open_prepared

    prepared = open_prepared("glyphs", glyphs_root)
    first = prepared.split("test").iloc[0]
    Image.fromarray(np.load(prepared.root / "images.npy")[int(first["path"].split("#")[1])]).save(tmp_path / "q.png")
    done = invoke("search", str(index), "--images", str(tmp_path / "q.png"), "-k", "3", "--json",
                  "--data-root", str(glyphs_root))  # fmt: skip
    assert done.exit_code == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert rows[0]["path"] == first["path"] and rows[0]["label"] == str(first["label"])
    assert rows[0]["score"] == pytest.approx(1.0, abs=1e-6)  # the PNG of a gallery image finds that image
    query = str(tmp_path / "q.png")
    table = invoke("search", str(index), "--images", query, "-k", "2", "--data-root", str(glyphs_root))
    assert table.exit_code == 0 and "neighbour" in table.stdout and first["path"] in table.stdout


@pytest.fixture
def gallery_file(tmp_path: Path) -> Path:
    return write_embeddings(tmp_path / "gallery.npz", _gallery({"model_fingerprint": "a" * 64, "run": "somewhere"}))


def _error(done: object) -> str:
    stderr: str = done.stderr  # type: ignore[attr-defined]
    lines = [line for line in stderr.splitlines() if line.startswith(("error:", "hint:", "Traceback"))]
    assert len(lines) == 2 and lines[0].startswith("error:") and lines[1].startswith("hint:"), stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--index", "annoy"], 2, "unknown index kind"),
        (["--nlist", "4"], 2, "--nlist does not apply to a flat index"),
        (["--index", "ivf", "--nprobe", "0"], 2, "--nprobe must be >= 1"),
        (["--index", "ivf", "--nlist", "100"], 2, "needs at least 3900 gallery vectors"),
        (["--index", "ivfpq", "--nlist", "4", "--m", "5"], 2, "does not divide"),
        (["--index", "hnsw", "--nbits", "4"], 2, "--nbits does not apply"),
    ],
)
def test_bad_index_options(gallery_file: Path, tmp_path: Path, args: list[str], code: int, needle: str) -> None:
    done = invoke("index", "--embeddings", str(gallery_file), "-o", str(tmp_path / "idx"), *args)
    assert done.exit_code == code, done.stderr
    assert needle in _error(done)
    assert not (tmp_path / "idx").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_output_folder_must_exist_and_an_index_is_replaced_only_with_force(gallery_file: Path, tmp_path: Path) -> None:
    missing = invoke("index", "--embeddings", str(gallery_file), "-o", str(tmp_path / "no" / "idx"))
    assert missing.exit_code == 3 and "does not exist" in _error(missing)
    assert invoke("index", "--embeddings", str(gallery_file), "-o", str(tmp_path / "idx")).exit_code == 0
    again = invoke("index", "--embeddings", str(gallery_file), "-o", str(tmp_path / "idx"))
    assert again.exit_code == 2 and "already exists" in _error(again)
    target = str(tmp_path / "idx")
    forced = invoke("index", "--embeddings", str(gallery_file), "-o", target, "--force", "--index", "hnsw")
    assert forced.exit_code == 0 and load_index(tmp_path / "idx").meta["kind"] == "hnsw"


def test_bad_searches(gallery_file: Path, tmp_path: Path) -> None:
    index = tmp_path / "idx"
    assert invoke("index", "--embeddings", str(gallery_file), "-o", str(index)).exit_code == 0
    too_many = invoke("search", str(index), "--embeddings", str(gallery_file), "-k", "801")
    assert too_many.exit_code == 2 and "801" in _error(too_many)
    narrow = write_embeddings(tmp_path / "narrow.npz", Embeddings(GALLERY[:, :8], ["x"] * 800))
    wrong_dim = invoke("search", str(index), "--embeddings", str(narrow), "-k", "3")
    assert wrong_dim.exit_code == 2 and "dimension 8, the index 16" in _error(wrong_dim)
    other = write_embeddings(tmp_path / "o.npz", Embeddings(QUERIES, ["q"] * 20, meta={"model_fingerprint": "b" * 64}))
    other_model = invoke("search", str(index), "--embeddings", str(other), "-k", "3")
    assert other_model.exit_code == 2 and "another model" in _error(other_model)
    absent = invoke("search", str(tmp_path / "nothing"), "--embeddings", str(gallery_file))
    assert absent.exit_code == 3 and "does not exist" in _error(absent)
    ok = invoke("search", str(index), "--embeddings", str(gallery_file), "-k", "2", "--json")
    assert ok.exit_code == 0 and len(json.loads(ok.stdout)) == 1600


def test_search_grid_marks_neighbours_of_the_querys_class(glyphs_run: Path, glyphs_root: Path, tmp_path: Path) -> None:
    from PIL import Image

    from dmlbench.datasets import open_prepared
    from dmlbench.reporting import grid as G

    index = tmp_path / "glyphs.index"
    done = invoke("index", str(glyphs_run), "--dataset", "glyphs", "-o", str(index), "--data-root", str(glyphs_root))
    assert done.exit_code == 0, done.stderr
    prepared = open_prepared("glyphs", glyphs_root)
    first = prepared.split("test").iloc[0]
    pixels = np.load(prepared.root / "images.npy")[int(first["path"].split("#")[1])]
    folder = tmp_path / "queries" / str(first["label"])  # a class folder: the query's class is known
    folder.mkdir(parents=True)
    Image.fromarray(pixels).save(folder / "q.png")
    out = tmp_path / "grid.png"
    done = invoke("search", str(index), "--images", str(folder.parent), "-k", "4", "--grid", str(out),
                  "--data-root", str(glyphs_root))  # fmt: skip
    assert done.exit_code == 0, done.stderr
    drawn = Image.open(out).convert("RGB")
    cell, top = 88, 22
    y = top + G._GAP + 1
    assert drawn.getpixel((G._LABEL_WIDTH + 1, y)) == G.QUERY_COLOUR
    # the first neighbour is the query image itself (score 1), so of its class: a green border
    assert drawn.getpixel((G._LABEL_WIDTH + cell + G._GAP + 1, y)) == G.CORRECT_COLOUR
    assert drawn.size == (G._LABEL_WIDTH + 5 * (cell + G._GAP) + G._GAP, top + cell + 2 * G._GAP)

    unlabelled = tmp_path / "loose.png"
    Image.fromarray(pixels).save(unlabelled)
    done = invoke("search", str(index), "--images", str(unlabelled), "-k", "2", "--grid", str(out),
                  "--data-root", str(glyphs_root))  # fmt: skip
    assert done.exit_code == 0, done.stderr
    assert Image.open(out).convert("RGB").getpixel((G._LABEL_WIDTH + cell + G._GAP + 1, y)) == G.UNKNOWN_COLOUR

    missing = invoke("search", str(index), "--images", str(unlabelled), "--grid", str(tmp_path / "no" / "g.png"),
                     "--data-root", str(glyphs_root))  # fmt: skip
    assert missing.exit_code == 3 and "--grid" in missing.stderr
