"""`evaluate(run_dir)`: rebuild a finished run's model, embed a split, score it, write metrics.json."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import dmlbench
from dmlbench.errors import ConfigError, MissingInputError, UsageError
from dmlbench.evaluation.clustering import DEFAULT_NITER
from dmlbench.evaluation.core import EvalOutcome, evaluate_embeddings
from dmlbench.evaluation.search import BackendName, Distance
from dmlbench.events import Event, EventHandler, emit
from dmlbench.rundir import Manifest, MetricsRecord, RunDir
from dmlbench.utils.io import atomic_path

if TYPE_CHECKING:
    import pandas as pd

SPLITS = ("test", "val")


@dataclass(frozen=True)
class EvalResult:
    """What `evaluate` wrote: the metrics and the path of metrics.json."""

    metrics: dict[str, float]
    path: Path
    outcome: EvalOutcome | None = None


def _val_classes(train_labels: np.ndarray, manifest: Manifest, fraction: float, seed: int) -> list[int]:
    """The training classes held out for validation: the manifest's list, else the same seeded draw."""
    from dmlbench.datasets.splits import held_out_classes

    if manifest.val_classes:
        return list(manifest.val_classes)
    try:
        return held_out_classes(train_labels, fraction, seed)
    except ConfigError:
        return []


def _frames(index: pd.DataFrame, split: str, manifest: Manifest, cfg: Any) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(query rows, gallery rows or None) of `split` from the prepared index."""
    present = set(index["split"].astype(str).unique())
    if split == "test":
        if "test" in present:
            return index[index["split"] == "test"], None
        if {"query", "gallery"} <= present:
            return index[index["split"] == "query"], index[index["split"] == "gallery"]
        raise UsageError("the prepared dataset has no test split (nor query/gallery)", hint="re-run `dmlbench prepare`")
    if "val" in present:
        return index[index["split"] == "val"], None
    train = index[index["split"] == "train"]
    held_out = _val_classes(train["label"].to_numpy(), manifest, float(cfg.validation.val_classes), int(cfg.seed))
    if held_out:
        return train[train["label"].isin(held_out)], None
    raise UsageError(
        "this run has no validation split (no val rows in the dataset, no validation.val_classes in the run)",
        hint="train with --set validation.val_classes=0.2 to hold out training classes, or use --split test",
    )


def evaluate(
    run_dir: Path,
    *,
    split: str = "test",
    recall_k: Sequence[int] | None = None,
    metrics: Iterable[str] | None = None,
    device: str = "auto",
    data_root: Path | None = None,
    save_embeddings: bool = False,
    batch_size: int = 256,
    distance: Distance = "cosine",
    kmeans_niter: int = DEFAULT_NITER,
    backend: BackendName = "auto",
    on_event: EventHandler | None = None,
    locked: bool = False,
) -> EvalResult:
    """Embed `split` of the run's dataset with its trained model and write `eval/<split>/metrics.json`.

    `recall_k=None` uses the dataset's K values; query/gallery datasets (In-Shop) search the gallery.
    A metric subset merges into the stored metrics. The run folder is claimed while this writes, unless
    the caller (training, which evaluates at its end) already holds it: `locked=True`.
    """
    run = RunDir(Path(run_dir))
    if not run.root.is_dir():
        raise MissingInputError(f"run directory {run.root} does not exist", hint="check the path (see `ls runs/`)")
    run.require_complete()  # before claiming: a folder that is no finished run gets no lock file either
    claim = contextlib.nullcontext() if locked else run.claim(holder="evaluate")
    with claim:
        return _evaluate(
            run,
            split=split,
            recall_k=recall_k,
            metrics=metrics,
            device=device,
            data_root=data_root,
            save_embeddings=save_embeddings,
            batch_size=batch_size,
            distance=distance,
            kmeans_niter=kmeans_niter,
            backend=backend,
            on_event=on_event,
        )


def _evaluate(
    run: RunDir,
    *,
    split: str,
    recall_k: Sequence[int] | None,
    metrics: Iterable[str] | None,
    device: str,
    data_root: Path | None,
    save_embeddings: bool,
    batch_size: int,
    distance: Distance,
    kmeans_niter: int,
    backend: BackendName,
    on_event: EventHandler | None,
) -> EvalResult:
    from dmlbench.datasets import open_prepared
    from dmlbench.datasets.torch_data import build_dataset
    from dmlbench.evaluation.embed import embed_dataset
    from dmlbench.models import load_trained_embedder
    from dmlbench.utils.device import resolve_device

    started = time.perf_counter()
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}", hint=f"use one of {', '.join(SPLITS)}")
    manifest = run.require_complete()
    target = resolve_device(device)
    model, cfg = load_trained_embedder(run.root, target)
    prepared = open_prepared(cfg.dataset, data_root)
    expected = manifest.dataset.fingerprint if manifest.dataset is not None else None
    if expected and expected != prepared.fingerprint:
        emit(
            on_event,
            Event(
                "log",
                "evaluate",
                message=f"warning: {cfg.dataset} was re-prepared since training "
                "(index fingerprint differs); metrics use the current index",
            ),
        )
    query_rows, gallery_rows = _frames(prepared.index, split, manifest, cfg)
    if len(query_rows) == 0 or (gallery_rows is not None and len(gallery_rows) == 0):
        raise UsageError(f"split {split!r} of {cfg.dataset} is empty", hint="re-run `dmlbench prepare`")

    def embed(rows: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray]:
        dataset = build_dataset(
            prepared, rows, train=False, image_size=cfg.model.image_size, channels=cfg.model.in_channels
        )
        return embed_dataset(model, dataset, device=target, batch_size=batch_size, task=name, on_event=on_event)

    embeddings, labels = embed(query_rows, f"embed {split}" if gallery_rows is None else "embed query")
    gallery = gallery_labels = None
    if gallery_rows is not None:
        gallery, gallery_labels = embed(gallery_rows, "embed gallery")
    ks = list(recall_k) if recall_k else [int(k) for k in prepared.info.get("recall_k") or (1, 2, 4, 8)]
    outcome = evaluate_embeddings(
        embeddings,
        labels,
        recall_k=ks,
        metrics=tuple(metrics) if metrics is not None else None,
        device=device,
        distance=distance,
        gallery_embeddings=gallery,
        gallery_labels=gallery_labels,
        kmeans_niter=kmeans_niter,
        seed=int(cfg.seed),
        backend=backend,
        on_event=on_event,
    )
    if save_embeddings:
        _save_array(run.embeddings_path(split), embeddings)
        _save_array(run.labels_path(split), labels)
        if gallery is not None and gallery_labels is not None:
            _save_array(run.embeddings_path(split, gallery=True), gallery)
            _save_array(run.labels_path(split, gallery=True), gallery_labels)
    record = MetricsRecord(
        run_id=manifest.run_id,
        split=split,
        metrics=outcome.metrics,
        recall_k=outcome.recall_k,
        protocol=outcome.protocol,
        n_queries=outcome.n_queries,
        n_gallery=outcome.n_gallery,
        lone_queries=outcome.lone_queries,
        embedding_dim=outcome.embedding_dim,
        distance=outcome.distance,
        backend=outcome.backend,
        kmeans_niter=kmeans_niter,
        seconds=round(time.perf_counter() - started, 3),
        metric_seconds=round(outcome.seconds, 3),
        dmlbench_version=dmlbench.__version__,
    )
    written = run.write_metrics(record)  # written last: its presence means "evaluated"
    return EvalResult(metrics=written.metrics, path=run.metrics_path(split), outcome=outcome)


def _save_array(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        np.save(handle, array)
