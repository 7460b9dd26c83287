"""`bench --launcher slurm` with a loss file of the user's: the array task re-loads it by its recorded path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cluster import Cluster
from typer.testing import CliRunner

pytestmark = pytest.mark.slurm

PLUGIN_FILE = Path(__file__).parents[1] / "losses" / "plugins" / "contract_losses.py"


def test_bench_on_slurm_trains_a_plugin_loss(
    slurm_cluster: Cluster, partition: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dmlbench.cli import app

    monkeypatch.chdir(tmp_path)  # the user's folder: the name is relative, as they would type it
    shutil.copyfile(PLUGIN_FILE, tmp_path / "my_loss.py")
    args = ["bench", "--datasets", "digits", "--losses", "./my_loss.py:GoodLoss", "--seeds", "1", "--epochs", "1"]
    args += ["--runs-root", "runs", "--data-root", "data", "--device", "cpu"]
    args += ["--launcher", "slurm", "--slurm-partition", partition, "--slurm-time", "10"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert "./my_loss.py:GoodLoss@" in result.stdout
    manifest = json.loads((tmp_path / "runs" / "digits-my_loss-GoodLoss-small_cnn-seed0" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["plugins"][0]["name"] == "./my_loss.py:GoodLoss"
