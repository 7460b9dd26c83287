"""Regenerate tests/reporting/fixtures/run-folders: hand-made run folders, written through dmlbench.rundir.

Run `python tests/reporting/make_fixtures.py` after changing it, then regenerate the golden files with
`DMLBENCH_UPDATE_GOLDEN=1 pytest tests/reporting`. The numbers are invented (deterministic from a seed);
they exist to exercise the report, not to claim results.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from dmlbench.rundir import DatasetRecord, Manifest, MetricsRecord, RunDir

ROOT = Path(__file__).parent / "fixtures" / "run-folders"

SPLITS = {
    "digits": {
        "train": {"images": 901, "classes": 5, "label_min": 0, "label_max": 4},
        "test": {"images": 896, "classes": 5, "label_min": 5, "label_max": 9},
    },
    "cub200": {
        "train": {"images": 5864, "classes": 100, "label_min": 0, "label_max": 99},
        "test": {"images": 5924, "classes": 100, "label_min": 100, "label_max": 199},
    },
    "sop": {
        "train": {"images": 59551, "classes": 11318, "label_min": 0, "label_max": 11317},
        "test": {"images": 60502, "classes": 11316, "label_min": 11318, "label_max": 22633},
    },
}
RECALL_K = {"digits": [1, 2, 4, 8], "cub200": [1, 2, 4, 8], "sop": [1, 10, 100, 1000]}
BACKBONE = {"digits": "small_cnn", "cub200": "googlenet", "sop": "googlenet"}
BATCH = {"digits": (5, 16), "cub200": (32, 4), "sop": (32, 2)}
BASE = {"clustering": 0.80, "triplet": 0.74, "lifted": 0.70, "npairs": 0.77}
PAPER_BASE = {"cub200": 0.46, "sop": 0.66}


def _metrics(dataset: str, loss: str, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed * 7919 + len(loss))
    base = PAPER_BASE.get(dataset, BASE[loss]) + (BASE[loss] - 0.75) * 0.2
    r1 = round(float(base + rng.normal(0, 0.01)), 6)
    metrics = {}
    for i, k in enumerate(RECALL_K[dataset]):
        metrics[f"recall@{k}"] = round(min(0.999, r1 + i * 0.08 * (1 - r1) * 2), 6)
    metrics["nmi"] = round(float(base * 0.9 + 0.1 + rng.normal(0, 0.01)), 6)
    metrics["f1"] = round(float(base * 0.5 + rng.normal(0, 0.01)), 6)
    metrics["precision@1"] = r1
    metrics["r_precision"] = round(float(base * 0.6 + rng.normal(0, 0.01)), 6)
    metrics["map@r"] = round(float(base * 0.45 + rng.normal(0, 0.01)), 6)
    return metrics


def write_run(
    dataset: str,
    loss: str,
    seed: int,
    *,
    status: str = "complete",
    metrics: bool = True,
    drop_metric: str | None = None,
    disjoint: bool = True,
    embeddings: bool = False,
    name: str | None = None,
) -> None:
    backbone = BACKBONE[dataset]
    run_id = name or f"{dataset}-{loss}-{backbone}-seed{seed}"
    run = ROOT / run_id
    run.mkdir(parents=True)
    splits: dict[str, Any] = json.loads(json.dumps(SPLITS[dataset]))
    if not disjoint:
        splits["train"].update({"classes": 10, "label_min": 0, "label_max": 9, "images": 1437})
        splits["test"].update({"classes": 10, "label_min": 0, "label_max": 9, "images": 360})
    run_dir = RunDir(run)
    run_dir.write_manifest(
        Manifest(
            run_id=run_id,
            status=status,  # type: ignore[arg-type]
            created="2026-01-01T00:00:00+00:00",
            finished=None if status == "running" else "2026-01-01T00:05:00+00:00",
            versions={"dmlbench": "0.1.0", "torch": "2.14.1", "torchvision": "0.29.1", "faiss": "1.9.0"},
            device="cpu",
            dataset=DatasetRecord(
                name=dataset,
                fingerprint=f"{dataset}-fingerprint",
                protocol="class-split",
                splits=splits,
                train_test_disjoint=disjoint,
            ),
            error="NaN loss at step 12" if status == "failed" else None,
            last_step=40,
            last_epoch=2,
        )
    )
    p, k = BATCH[dataset]
    config = {
        "dataset": dataset,
        "seed": seed,
        "run_id": run_id,
        "model": {"backbone": backbone, "embedding_dim": 64, "pretrained": backbone != "small_cnn"},
        "loss": {"name": loss, "margin": 1.0},
        "sampler": {"classes_per_batch": p, "samples_per_class": k},
        "optim": {"name": "adamw", "lr": 0.001},
        "schedule": {"epochs": 2},
    }
    run_dir.write_config(tomli_w.dumps(config))
    rng = np.random.default_rng(seed + 100 * len(loss))
    history = []
    for step in range(40):
        value = 1.5 * np.exp(-step / 15) + 0.1 + 0.05 * rng.random()
        row = {"step": step + 1, "epoch": step // 20, "loss": round(float(value), 5), "lr": 0.001}
        history.append(row | {"images_per_s": 800.0, "seconds": round(0.05 * (step + 1), 3)})
    run_dir.train_dir.mkdir()
    run_dir.start_history()
    run_dir.append_history(history)
    if metrics:
        values = _metrics(dataset, loss, seed)
        if drop_metric:
            values.pop(drop_metric)
        record = MetricsRecord(
            run_id=run_id,
            split="test",
            metrics=values,
            recall_k=RECALL_K[dataset],
            protocol="query=gallery, self excluded by index",
            n_queries=SPLITS[dataset]["test"]["images"],
            n_gallery=SPLITS[dataset]["test"]["images"],
            lone_queries=0,
            embedding_dim=64,
            distance="cosine",
            backend="faiss-cpu",
            seconds=0.5,
            dmlbench_version="0.1.0",
        )
        run_dir.write_metrics(record, merge=False)
    if embeddings:
        rng = np.random.default_rng(seed)
        labels = np.repeat(np.arange(5, 10), 40)
        centers = rng.normal(size=(10, 16)) * 3
        points = centers[labels] + rng.normal(size=(len(labels), 16))
        np.save(run_dir.embeddings_path("test"), points.astype(np.float32))
        np.save(run_dir.labels_path("test"), labels.astype(np.int64))


def main() -> None:
    if ROOT.exists():
        shutil.rmtree(ROOT)
    for seed in range(3):
        write_run("digits", "clustering", seed, embeddings=seed == 0)
    write_run("digits", "triplet", 0, embeddings=True)
    write_run("digits", "triplet", 1)
    write_run("digits", "triplet", 2, status="failed", metrics=False)
    write_run("digits", "lifted", 0)
    write_run("digits", "lifted", 1, status="running", metrics=False)
    write_run("digits", "npairs", 0, drop_metric="f1")
    write_run("digits", "npairs", 1)
    write_run("digits", "npairs", 2)
    write_run("digits", "clustering", 7, disjoint=False, name="digits-clustering-overlap-seed7")
    write_run("cub200", "clustering", 0)
    write_run("cub200", "clustering", 1)
    write_run("cub200", "triplet", 0)
    write_run("sop", "clustering", 0)


if __name__ == "__main__":
    main()
