"""Plots: every figure in PNG and SVG, deterministic bytes, nothing drawn for data that is not there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dmlbench.reporting import report
from dmlbench.reporting.plots import _BASELINE_COLORS, _COLORS, _measured_style


def digits_runs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.name.startswith("digits-") and "overlap" not in p.name)


def test_plots_written_as_png_and_svg_and_stable(fixture_runs: Path, tmp_path: Path) -> None:
    runs = digits_runs(fixture_runs)
    first, second = tmp_path / "a", tmp_path / "b"
    report(runs, fmt="markdown", plots_dir=first)
    report(runs, fmt="markdown", plots_dir=second)
    names = sorted(p.name for p in first.iterdir())
    assert names == [f"digits-{kind}.{ext}" for kind in ("recall", "training", "tsne") for ext in ("png", "svg")]
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), f"{name} is not deterministic"
    for kind in ("recall", "training", "tsne"):
        with Image.open(first / f"digits-{kind}.png") as image:
            assert image.width >= 400 and image.height >= 300
            colours = np.asarray(image.convert("RGB")).reshape(-1, 3)
            assert len(np.unique(colours, axis=0)) > 20  # more than a blank canvas
        svg = (first / f"digits-{kind}.svg").read_text(encoding="utf-8")
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "dc:date" not in svg


def test_no_tsne_without_saved_embeddings(fixture_runs: Path, tmp_path: Path) -> None:
    runs = [p for p in digits_runs(fixture_runs) if p.name.endswith("seed1")]
    report(runs, fmt="markdown", plots_dir=tmp_path)
    assert sorted(p.stem for p in tmp_path.glob("*.png")) == ["digits-recall", "digits-training"]


def test_unreadable_saved_embeddings_skip_the_tsne_map(fixture_runs: Path, tmp_path: Path) -> None:
    import shutil

    runs = []
    for run in digits_runs(fixture_runs):
        runs.append(shutil.copytree(run, tmp_path / "runs" / run.name))
        saved = runs[-1] / "eval" / "test" / "embeddings.npy"
        if saved.is_file():
            saved.write_bytes(saved.read_bytes()[:20])  # truncated by a full disk or a kill
    report(runs, fmt="markdown", plots_dir=tmp_path / "plots")
    assert sorted(p.stem for p in (tmp_path / "plots").glob("*.png")) == ["digits-recall", "digits-training"]


def test_rows_past_the_palette_get_a_new_marker_so_no_two_lines_look_alike() -> None:
    # Ten losses plus baselines overran the nine colours: triplet and supcon were both plain green.
    styles = [_measured_style(index) for index in range(len(_COLORS) * 6)]
    assert len(set(styles)) == len(styles)
    assert not set(_BASELINE_COLORS) & set(_COLORS)
