"""Fixtures for evaluation tests: a prepared `digits` dataset and tiny run directories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from dmlbench.config import ModelConfig, TrainConfig, dump_toml
from dmlbench.paths import Places
from dmlbench.rundir import Manifest, RunDir


@pytest.fixture(scope="session")
def data_root(digits_root: Path) -> Path:
    """The suite's prepared `digits` (tests/conftest.py), by the name these tests give a data root."""
    return digits_root


def _make_run(
    root: Path,
    data_root: Path,
    *,
    embedding_dim: int = 16,
    saved_dim: int | None = None,
    status: str = "complete",
    manifest_extra: dict[str, Any] | None = None,
    val_classes: float = 0.0,
) -> Path:
    """A run directory in the contract's layout with a small_cnn embedder (random weights, seeded)."""
    from dmlbench.datasets import open_prepared
    from dmlbench.models import build_embedder

    model_cfg = ModelConfig(
        backbone="small_cnn",
        embedding_dim=embedding_dim,
        pretrained=False,
        normalize=True,
        image_size=8,
        in_channels=1,
        freeze_bn=False,
    )
    cfg = TrainConfig(dataset="digits", seed=0, model=model_cfg, validation={"val_classes": val_classes})
    run = RunDir(root / "digits-test-run")
    run.root.mkdir(parents=True)
    run.write_config(dump_toml(cfg))
    torch.manual_seed(0)
    saved = build_embedder(model_cfg.model_copy(update={"embedding_dim": saved_dim or embedding_dim}))
    run.train_dir.mkdir()
    torch.save(saved.state_dict(), run.model_path)
    prepared = open_prepared("digits", data_root)
    run.write_manifest(
        Manifest.model_validate(
            {
                "run_id": run.run_id,
                "status": status,
                "dataset": {"name": "digits", "fingerprint": prepared.fingerprint},
                **(manifest_extra or {}),
            }
        )
    )
    return run.root


@pytest.fixture
def make_run() -> Any:
    """Factory: make_run(root, data_root, **options) -> run directory path."""
    return _make_run


@pytest.fixture(scope="session")
def evaluated_run(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    """A run folder already evaluated on test (copy it before changing it: it is shared)."""
    from dmlbench.evaluation import evaluate

    run = _make_run(tmp_path_factory.mktemp("evaluated"), data_root)
    evaluate(run, places=Places.of(data_root), device="cpu")
    return run
