"""Retrieval grids: the drawing (borders by correctness, missing or escaping paths as grey tiles) and
their place in the report (html embeds them, --plots writes PNGs), from real prepared digits images."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from PIL import Image
from report_runs import seeds

from dmlbench.reporting import report
from dmlbench.reporting.grid import (
    CORRECT_COLOUR,
    MISSING_COLOUR,
    QUERY_COLOUR,
    WRONG_COLOUR,
    GridRow,
    ImageSource,
    draw_retrieval_grid,
    png_bytes,
)
from dmlbench.rundir import RetrievalRecord, RetrievedItem, RetrievedQuery, RunDir


def colour_share(image: Image.Image, colour: tuple[int, int, int]) -> float:
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    return float((np.abs(pixels - np.array(colour)).sum(axis=2) < 10).mean())


def test_grid_draws_query_and_neighbours_with_coloured_borders(digits_root: Path) -> None:
    source = ImageSource(digits_root / "digits")
    rows = [
        GridRow("worst 1", "images.npy#0", [("images.npy#1", False), ("images.npy#2", False)]),
        GridRow("random 2", "images.npy#3", [("images.npy#4", True), ("../../../etc/passwd", True)]),
    ]
    image = draw_retrieval_grid(rows, source, cell=40, border=4)
    assert image.size == (64 + 3 * 46 + 6, 2 * 46 + 6)
    for colour in (QUERY_COLOUR, CORRECT_COLOUR, WRONG_COLOUR, MISSING_COLOUR):
        assert colour_share(image, colour) > 0.005, colour
    # row 1: both neighbours wrong, so no green in its band; row 2 holds the green ones
    top, bottom = image.crop((0, 0, image.width, 46)), image.crop((0, 46, image.width, image.height))
    assert colour_share(top, CORRECT_COLOUR) == 0.0 and colour_share(bottom, WRONG_COLOUR) == 0.0
    assert source.load("../../../etc/passwd") is None and source.load("images.npy#999999") is None
    assert png_bytes(image) == png_bytes(draw_retrieval_grid(rows, source, cell=40, border=4))


def retrieval_run(root: Path, digits_root: Path, loss: str) -> None:
    runs = seeds(root, loss, [{"recall@1": 0.8}, {"recall@1": 0.82}], loss=loss)
    queries = [
        RetrievedQuery(
            kind="worst" if q < 2 else "random",
            query=RetrievedItem(path=f"images.npy#{q}", label=q % 10),
            neighbours=[RetrievedItem(path=f"images.npy#{q + j}", label=0, correct=j % 2 == 0) for j in range(1, 5)],
        )
        for q in range(4)
    ]
    for run in runs:
        run.eval_dir("test").mkdir(parents=True, exist_ok=True)
        run.write_retrieval(
            RetrievalRecord(
                run_id=run.run_id,
                split="test",
                dataset="digits",
                dataset_root=str(digits_root / "digits"),
                k=4,
                queries=queries,
            )
        )


def test_report_embeds_a_grid_per_trained_row_and_writes_pngs(tmp_path: Path, digits_root: Path) -> None:
    retrieval_run(tmp_path / "runs", digits_root, "clustering")
    retrieval_run(tmp_path / "runs", digits_root, "triplet")
    plots = tmp_path / "plots"
    html = report([tmp_path / "runs"], fmt="html", plots_dir=plots, data_root=digits_root)
    grids = sorted(p.name for p in plots.glob("digits-retrieval-*.png"))
    assert grids == ["digits-retrieval-1.png", "digits-retrieval-2.png"]
    assert (
        html.count("<figcaption>digits: retrieval, ") == 2
        and "(triplet-seed0)" in html
        and "(clustering-seed0)" in html
    )
    embedded = [m for m in html.split('src="data:image/png;base64,')[1:]]
    images = [Image.open(io.BytesIO(base64.b64decode(chunk.split('"')[0]))) for chunk in embedded]
    assert any(colour_share(image, WRONG_COLOUR) > 0.01 for image in images)
    # without the data root the recorded folder is used; without either, no grid and no error
    moved = tmp_path / "elsewhere"
    assert "<figcaption>digits: retrieval, " in report([tmp_path / "runs"], fmt="html", data_root=moved)
    record = RunDir(tmp_path / "runs" / "triplet-seed0").read_retrieval("test")
    assert record is not None
    RunDir(tmp_path / "runs" / "triplet-seed0").write_retrieval(record.model_copy(update={"dataset_root": None}))
    assert report([tmp_path / "runs"], fmt="html", data_root=moved).count("<figcaption>digits: retrieval, ") == 1
