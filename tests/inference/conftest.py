"""Fixtures for the inference tests: a prepared `glyphs` and a briefly trained glyphs run."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmlbench.paths import Places


@pytest.fixture(scope="session")
def glyphs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding a prepared `glyphs` (generated from matplotlib's fonts: no download)."""
    from dmlbench.datasets import prepare

    root = tmp_path_factory.mktemp("data")
    prepare("glyphs", Places.of(root))
    return root


@pytest.fixture(scope="session")
def glyphs_run(tmp_path_factory: pytest.TempPathFactory, glyphs_root: Path) -> Path:
    """A glyphs run trained for a few steps by `train` itself (small_cnn, BatchStandardize head)."""
    from dmlbench.config import load_config
    from dmlbench.training import train

    cfg = load_config(None, ["schedule.steps=4"], {"dataset": "glyphs", "loss.name": "triplet"})
    run = tmp_path_factory.mktemp("runs") / "glyphs-run"
    train(cfg, run, places=Places.of(glyphs_root), evaluate_at_end=False, device="cpu")
    return run
