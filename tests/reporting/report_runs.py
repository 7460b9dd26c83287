"""Run folders for reporting tests, written through the run-directory owner (dmlbench.rundir)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dmlbench.config import dump_toml, load_config
from dmlbench.rundir import DatasetRecord, Manifest, MetricsRecord, RunDir

SPLITS = {
    "train": {"images": 900, "classes": 5, "label_min": 0, "label_max": 4},
    "test": {"images": 896, "classes": 5, "label_min": 5, "label_max": 9},
}


def make_run(
    root: Path,
    folder: str,
    metrics: Mapping[str, float],
    *,
    dataset: str = "digits",
    loss: str = "clustering",
    seed: int = 0,
    overrides: Sequence[str] = (),
    run_id: str | None = None,
    kind: str = "trained",
    **manifest: Any,
) -> RunDir:
    """A complete, evaluated run: manifest, resolved-looking config and test metrics."""
    run = RunDir(root / folder)
    cfg = load_config(
        None,
        ["model.backbone=small_cnn", "sampler.classes_per_batch=5", "sampler.samples_per_class=8", *overrides],
        {"loss.name": loss, "seed": seed},
    )
    cfg = cfg.model_copy(update={"dataset": dataset})
    run.write_config(dump_toml(cfg))
    record = DatasetRecord(name=dataset, splits=SPLITS, train_test_disjoint=True)
    rid = run_id if run_id is not None else folder
    run.write_manifest(Manifest(run_id=rid, status="complete", kind=kind, dataset=record, **manifest))  # type: ignore[arg-type]
    run.write_metrics(MetricsRecord(run_id=rid, split="test", metrics=dict(metrics), protocol="query=gallery"))
    return run


def seeds(root: Path, prefix: str, values: Sequence[Mapping[str, float]], **kwargs: Any) -> list[RunDir]:
    """One run per metrics dict, seeds 0..n-1, in folders `<prefix>-seed<s>`."""
    return [make_run(root, f"{prefix}-seed{s}", m, seed=s, **kwargs) for s, m in enumerate(values)]
