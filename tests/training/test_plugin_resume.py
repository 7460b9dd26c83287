"""A file-plugin loss survives SIGKILL + --resume bit-identically (test_train.py's machinery, a plugin name)."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from test_train import STEPS, Reference, _cfg, _final_state, _history, _spawn_training, _wait_for_steps
from test_train import reference_runs as reference_runs  # the fixture: uninterrupted runs to compare with

from dmlbench.paths import Places
from dmlbench.rundir import RunDir
from dmlbench.training import train

PLUGIN_FILE = Path(__file__).parents[1] / "losses" / "plugins" / "contract_losses.py"


@pytest.mark.slow
def test_a_plugin_loss_resumes_bit_exactly_after_sigkill(
    digits_root: Path, tmp_path: Path, reference_runs: Callable[[str], Reference], one_thread: object
) -> None:
    plugin = tmp_path / "my_loss.py"
    shutil.copyfile(PLUGIN_FILE, plugin)
    name = f"{plugin}:GoodLoss"
    run_dir = tmp_path / "run"
    proc = _spawn_training(run_dir, digits_root, STEPS, name)
    _wait_for_steps(run_dir, 7, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=120)
    run = RunDir(run_dir)
    assert run.read_manifest().status == "running" and run.read_manifest().plugins[0].name == name
    stopped_at = torch.load(run.last_checkpoint, weights_only=True)["position"]["step"]
    assert 0 < stopped_at < STEPS
    summary = train(
        _cfg(name, f"schedule.steps={STEPS}", "schedule.checkpoint_every=3"),
        run_dir,
        places=Places.of(digits_root),
        resume=True,
        evaluate_at_end=False,
    )
    assert summary.resumed_from_step == stopped_at and summary.steps == STEPS
    resumed, reference = _final_state(run), reference_runs(name)
    assert resumed["model"].keys() == reference["model"].keys()
    assert all(torch.equal(resumed["model"][k], reference["model"][k]) for k in reference["model"])
    assert [row["step"] for row in _history(run_dir)] == list(range(1, STEPS + 1))
