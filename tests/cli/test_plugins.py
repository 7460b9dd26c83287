"""A loss and a backbone of your own (`path/to/file.py:Attr`) work wherever a built-in name does:
train, evaluate, --resume (refused when the file changed), bench with workers, tune, torchrun, report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
LOSS_FILE = REPO / "tests" / "losses" / "plugins" / "contract_losses.py"
LOSS = "./my_loss.py:GoodLoss"
RUN_DIR = "runs/digits-my_loss-GoodLoss-my_backbone-TinyConv-seed0"  # plain-name slugs of both plugins

BACKBONE = '''"""A backbone of your own: a feature map out, no out_features (dmlbench pools and measures it)."""
from torch import nn


class TinyConv(nn.Module):
    def __init__(self, in_channels: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, 12, 3, padding=1), nn.ReLU())

    def forward(self, images):
        return self.body(images)


def not_a_module():
    return 3
'''


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    """A user's folder: their loss and backbone files next to where they run dmlbench."""
    shutil.copyfile(LOSS_FILE, tmp_path / "my_loss.py")
    (tmp_path / "my_backbone.py").write_text(BACKBONE)
    return tmp_path


def dmlbench(cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, "-m", "dmlbench", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_train_evaluate_and_resume_with_a_file_loss_and_backbone(workdir: Path, digits_root: Path) -> None:
    common = ["--dataset", "digits", "--loss", LOSS, "--data-root", str(digits_root), "--runs-root", "runs", "-q"]
    first = dmlbench(workdir, "train", *common, "--backbone", "./my_backbone.py:TinyConv", "--steps", "3")
    assert first.returncode == 0, first.stderr
    run = workdir / RUN_DIR
    manifest = json.loads((run / "manifest.json").read_text())
    records = {p["role"]: p for p in manifest["plugins"]}
    assert set(records) == {"loss", "backbone"} and records["loss"]["name"] == LOSS
    for record in records.values():
        from dmlbench.registry import file_sha256

        assert file_sha256(run / record["stored"]) == record["sha256"]  # the run keeps the exact version
    assert f'name = "{LOSS}"' in (run / "config.toml").read_text()  # stored verbatim
    (workdir / "my_backbone.py").unlink()  # evaluate rebuilds the backbone from the run's copy, from anywhere
    evaluated = dmlbench(workdir.parent, "evaluate", str(run), "--data-root", str(digits_root))
    assert evaluated.returncode == 0, evaluated.stderr
    (workdir / "my_backbone.py").write_text(BACKBONE)

    again = [*common, "--backbone", "./my_backbone.py:TinyConv", "--steps", "5", "--resume"]
    with (workdir / "my_loss.py").open("a") as file:
        file.write("\n# tweaked after the run started\n")
    refused = dmlbench(workdir, "train", *again)
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: loss plugin ./my_loss.py:GoodLoss changed since")
    assert "hint: restore the file from the run's copy " in refused.stderr
    assert str(Path(RUN_DIR) / records["loss"]["stored"]) in refused.stderr
    shutil.copyfile(run / records["loss"]["stored"], workdir / "my_loss.py")  # the hint's remedy works
    resumed = dmlbench(workdir, "train", *again)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "manifest.json").read_text())["last_step"] == 5


def test_plugin_errors_are_one_line(workdir: Path, digits_root: Path) -> None:
    base = ["train", "--dataset", "digits", "--data-root", str(digits_root), "--runs-root", "runs", "-q"]
    missing = dmlbench(workdir, *base, "--loss", "./nope.py:Loss")
    assert missing.returncode == 3 and missing.stderr.startswith("error: plugin file")
    assert "Traceback" not in missing.stderr
    typo = dmlbench(workdir, *base, "--loss", "./my_loss.py:GoodLos")
    assert typo.returncode == 2 and "did you mean 'GoodLoss'" in typo.stderr
    not_a_module = dmlbench(workdir, *base, "--loss", "./my_backbone.py:not_a_module", "--steps", "1")
    assert not_a_module.returncode == 2 and "not a Module" in not_a_module.stderr
    assert not (workdir / "runs").exists() or not any((workdir / "runs").iterdir())


@pytest.mark.slow
def test_bench_with_workers_trains_evaluates_and_reports_a_plugin_loss(workdir: Path, digits_root: Path) -> None:
    result = dmlbench(
        workdir,
        *("bench", "--datasets", "digits", "--losses", f"triplet,{LOSS}", "--seeds", "2", "--workers", "2"),
        *("--epochs", "1", "--runs-root", "runs", "--data-root", str(digits_root), "--device", "cpu", "-q"),
    )
    assert result.returncode == 0, result.stderr
    from dmlbench.registry import file_sha256

    version = file_sha256(workdir / "my_loss.py")[:8]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert any(row.startswith("| triplet ") for row in rows)
    assert any(row.startswith(f"| {LOSS}@{version} ") and "|   2 |" in row for row in rows)
    for seed in (0, 1):
        assert (workdir / "runs" / f"digits-my_loss-GoodLoss-small_cnn-seed{seed}" / "eval" / "test").is_dir()
    # report and status read records: the user's module is never imported
    code = (
        "import sys; from dmlbench.reporting import report; from dmlbench.benchmark.status import collect_status; "
        "text = report(['runs'], fmt='markdown'); collect_status('runs'); "
        "print(any(m.startswith('dmlbench_plugin_') for m in sys.modules), 'GoodLoss@' in text)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    check = subprocess.run([sys.executable, "-c", code], cwd=workdir, env=env, capture_output=True, text=True)
    assert check.stdout.split() == ["False", "True"], check.stderr


@pytest.mark.slow
def test_tune_with_workers_uses_the_plugins_search_space(workdir: Path, digits_root: Path) -> None:
    result = dmlbench(
        workdir,
        *("tune", "--loss", LOSS, "--dataset", "digits", "--trials", "2", "--folds", "1", "--workers", "2"),
        *("--epochs", "1", "--final-seeds", "0", "--runs-root", "runs", "--data-root", str(digits_root), "-q"),
    )
    assert result.returncode == 0, result.stderr
    trials = sorted((workdir / "runs" / "tune" / "digits-my_loss-GoodLoss").glob("trial-*/manifest.json"))
    assert len(trials) == 2
    margins = [json.loads(t.read_text())["tuned_params"] for t in trials]
    configs = [(t.parent / "config.toml").read_text() for t in trials]
    assert all("margin = " in c for c in configs), margins
    from dmlbench.utils.toml import tomllib

    values = [tomllib.loads(c)["loss"]["margin"] for c in configs]
    assert all(0.2 <= v <= 1.5 for v in values) and len(set(values)) == 2  # GoodLoss.search_space, searched


@pytest.mark.slow
def test_torchrun_with_two_processes_trains_a_plugin_loss(workdir: Path, digits_root: Path) -> None:
    result = dmlbench(
        workdir,
        *("train", "--loss", LOSS, "--dataset", "digits", "--device", "cpu", "--steps", "4", "-q"),
        *("--data-root", str(digits_root), "--run-dir", "r", "--nproc-per-node", "2"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((workdir / "r" / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["status"] == "complete"
    assert [p["name"] for p in manifest["plugins"]] == [LOSS]


def test_a_plugin_loss_parameter_trains_and_is_checkpointed(workdir: Path, digits_root: Path) -> None:
    import torch

    from dmlbench.config import load_config
    from dmlbench.paths import Places
    from dmlbench.training import train
    from dmlbench.training.optim import build_optimizer

    name = f"{workdir / 'my_loss.py'}:LearnedScaleLoss"
    cfg = load_config(None, ["schedule.steps=3"], {"dataset": "digits", "loss.name": name})
    summary = train(cfg, workdir / "run", places=Places.of(digits_root), evaluate_at_end=False)
    state = torch.load(summary.run_dir / "train" / "last.pt", weights_only=True)
    assert float(state["loss"]["log_scale"]) != 0.0  # it moved: the optimizer holds it
    from dmlbench.losses import LOSSES
    from dmlbench.models import build_embedder

    assert summary.config is not None
    loss = LOSSES.build(name, {})
    groups = build_optimizer(build_embedder(summary.config.model), summary.config.optim, loss).param_groups
    [group] = [g for g in groups if any(p is loss.log_scale for p in g["params"])]
    assert group["lr"] == summary.config.optim.lr * 10.0  # at its own param_lr_multiplier


def test_a_module_plugin_is_recorded_with_its_version(workdir: Path, digits_root: Path) -> None:
    # `python -m dmlbench` imports from the working directory: my_loss is a module on the path, not installed
    common = ["--dataset", "digits", "--data-root", str(digits_root), "--runs-root", "runs", "-q", "--steps", "1"]
    trained = dmlbench(workdir, "train", *common, "--loss", "my_loss:GoodLoss", "--no-eval")
    assert trained.returncode == 0, trained.stderr
    (manifest_path,) = (workdir / "runs").glob("*/manifest.json")
    manifest = json.loads(manifest_path.read_text())
    from dmlbench.registry import file_sha256

    assert manifest["plugins"] == []  # not a file plugin: nothing copied
    assert manifest["module_plugins"] == {
        "my_loss:GoodLoss": {
            "module": "my_loss",
            "file": str((workdir / "my_loss.py").resolve()),
            "sha256": file_sha256(workdir / "my_loss.py"),
        }
    }
