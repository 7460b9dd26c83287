"""Every run writes TensorBoard scalars under <run_dir>/tensorboard/ (loss, lr, images/s, validation)."""

from __future__ import annotations

from pathlib import Path

from dmlbench.config import load_config
from dmlbench.paths import Places
from dmlbench.rundir import RunDir
from dmlbench.training import train


def test_a_run_writes_loss_lr_throughput_and_validation_scalars(digits_root: Path, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sets = ["validation.val_classes=0.4", "sampler.classes_per_batch=3", "schedule.epochs=1"]
    cfg = load_config(None, sets, {"dataset": "digits", "loss.name": "triplet"})
    summary = train(cfg, tmp_path / "r", places=Places.of(digits_root), evaluate_at_end=False, device="cpu")
    events = EventAccumulator(str(RunDir(summary.run_dir).tensorboard_dir))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/images_per_s", "val/recall@1"} <= tags
    losses = events.Scalars("train/loss")
    assert [e.step for e in losses] == list(range(1, summary.steps + 1))
    assert losses[-1].value == summary.final_loss
