"""Helpers of the inference tests: the real CLI app, and run folders with random weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from typer.testing import CliRunner

from dmlbench.config import ModelConfig, TrainConfig, dump_toml
from dmlbench.rundir import Manifest, RunDir

runner = CliRunner()


def invoke(*args: str) -> Any:
    """The real `dmlbench` app; stdout and stderr apart."""
    from dmlbench.cli import app

    return runner.invoke(app, list(args))


def make_run(root: Path, data_root: Path, backbone: str, *, image_size: int = 32, channels: int = 1) -> Path:
    """A complete glyphs run folder with random weights for `backbone` and non-trivial head statistics."""
    from dmlbench.datasets import open_prepared
    from dmlbench.models import build_embedder

    model_cfg = ModelConfig(
        backbone=backbone,
        embedding_dim=32,
        pretrained=False,
        normalize=True,
        image_size=image_size,
        in_channels=channels,
        freeze_bn=False,
        feature_norm="batch",
    )
    cfg = TrainConfig(dataset="glyphs", seed=0, model=model_cfg)
    run = RunDir(root / f"glyphs-{backbone.replace(':', '-')}")
    run.root.mkdir(parents=True)
    run.write_config(dump_toml(cfg))
    torch.manual_seed(0)
    model = build_embedder(model_cfg)
    # eval-mode export must use these running statistics, not the batch's
    with torch.no_grad():
        model.feature_norm.running_mean.normal_(0.0, 0.5)  # type: ignore[operator]
        model.feature_norm.running_var.uniform_(0.5, 2.0)  # type: ignore[operator]
    run.train_dir.mkdir()
    torch.save(model.state_dict(), run.model_path)
    prepared = open_prepared("glyphs", data_root)
    dataset = {"name": "glyphs", "fingerprint": prepared.fingerprint}
    run.write_manifest(Manifest.model_validate({"run_id": run.run_id, "status": "complete", "dataset": dataset}))
    return run.root
