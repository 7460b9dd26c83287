"""`evaluate(run_dir)`: rebuild a finished run's model, embed a split, score it, write metrics.json."""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import dmlbench
from dmlbench.errors import ConfigError, DmlbenchError, EnvironmentFailure, MissingInputError, UsageError
from dmlbench.evaluation.core import (
    DEFAULT_RECALL_K,
    RETRIEVAL_SAMPLE,
    EvalOptions,
    EvalOutcome,
    RetrievalSample,
    evaluate_embeddings,
    with_overrides,
)
from dmlbench.events import Event, EventHandler, emit
from dmlbench.paths import Places, StrPath
from dmlbench.rundir import Manifest, MetricsRecord, RetrievalRecord, RetrievedItem, RetrievedQuery, RunDir
from dmlbench.utils.io import atomic_path

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class EvalResult:
    """What `evaluate` (or `run_baseline`) wrote: the metrics and the path of metrics.json.

    `outcome` is None when nothing was computed (`reused`: a complete baseline with the same config).
    """

    metrics: dict[str, float]
    path: Path
    outcome: EvalOutcome | None = None
    reused: bool = False


def os_failure(err: OSError, path: Path | str, action: str = "write") -> DmlbenchError:
    """A user-facing error for an OS error on `path`: a wrong kind of path is a usage error (exit 2);
    permissions, a full disk or a file-size limit are the environment (exit 4)."""
    # numpy reports a short write as a bare OSError ("N requested and M written"), with no errno
    reason = err.strerror or str(err) or type(err).__name__
    if isinstance(err, (IsADirectoryError, NotADirectoryError, FileExistsError)):
        folder = isinstance(err, IsADirectoryError)
        what = "a folder where a file belongs" if folder else "a file where a folder belongs"
        return ConfigError(
            f"cannot {action} {path}: {reason} ({what})", hint="move that entry away, or pick another folder"
        )
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) or err.errno is None:
        return EnvironmentFailure(
            f"cannot {action} {path}: {reason}", hint="free disk space (or raise the file-size limit) and rerun"
        )
    if isinstance(err, PermissionError) or err.errno in (errno.EROFS, errno.EPERM, errno.EACCES):
        return EnvironmentFailure(
            f"cannot {action} {path}: {reason}", hint="make the folder writable, or pick another one"
        )
    return EnvironmentFailure(f"cannot {action} {path}: {reason}", hint="check the disk and the path")


@contextlib.contextmanager
def writing(path: Path | str, action: str = "write") -> Iterator[None]:
    """Turn OSErrors raised while writing `path` into one-line user errors."""
    try:
        yield
    except OSError as err:
        raise os_failure(err, getattr(err, "filename", None) or path, action) from None


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
    run_dir: StrPath,
    options: EvalOptions | None = None,
    *,
    places: Places | None = None,
    on_event: EventHandler | None = None,
    locked: bool = False,
    model: Any = None,
    manifest: Manifest | None = None,
    **overrides: Any,
) -> EvalResult:
    """Embed `options.split` of the run's dataset with the run's model and write `eval/<split>/metrics.json`
    (and `retrieval.json`: `options.retrieval_sample` queries, worst first, with their nearest neighbours).

    `overrides` are EvalOptions fields replacing those of `options` (`evaluate(run, metrics=["nmi"])`).
    Any complete run folder works: trained runs, and baselines (their untrained network or raw pixels
    are rebuilt from config.toml). `recall_k=None` uses the dataset's K values; query/gallery datasets
    (In-Shop) search the gallery. A metric subset merges into the stored metrics. A generated dataset
    missing from `places.data_root` is prepared first. The run folder is claimed while this writes, unless
    the caller already holds it: `locked=True` (training, which evaluates at its end; a baseline).
    A caller writing the run right now (a baseline, marked running until its metrics exist) hands its
    `model` and `manifest`; the metrics then replace whatever the folder held instead of merging into it.
    """
    run = RunDir(Path(run_dir))
    if not run.root.exists():
        raise MissingInputError(f"run directory {run.root} does not exist", hint="check the path (see `ls runs/`)")
    if not run.root.is_dir():
        raise UsageError(f"{run.root} is a file, not a run directory", hint="pass the run's folder (see `ls runs/`)")
    # Bad options fail now, before the folder is claimed or a single image is embedded.
    opts = with_overrides(options, overrides)
    writing_now = manifest is not None
    if manifest is None:
        manifest = run.require_complete()  # before claiming: no finished run, no lock file either
    claim = contextlib.nullcontext() if locked else run.claim(holder="evaluate")
    with claim:
        return _score_run(
            run, opts, places or Places(), on_event=on_event, model=model, manifest=manifest, merge=not writing_now
        )


def _score_run(
    run: RunDir,
    opts: EvalOptions,
    places: Places,
    *,
    on_event: EventHandler | None,
    model: Any,
    manifest: Manifest,
    merge: bool,
) -> EvalResult:
    """Score one run folder the caller has claimed (`evaluate` without the checks and the claim)."""
    from dmlbench.datasets import open_or_prepare
    from dmlbench.datasets.torch_data import dataset_for_model
    from dmlbench.evaluation.embed import embed_dataset
    from dmlbench.evaluation.trained import load_run_embedder, read_run_config
    from dmlbench.utils.cpu import intra_op_threads
    from dmlbench.utils.device import resolve_device

    started = time.perf_counter()
    split = opts.split
    target = resolve_device(opts.device)
    if model is None:
        model, cfg = load_run_embedder(run, manifest, target)
    else:
        cfg = read_run_config(run)
    previous_unreadable = _stored_metrics_unreadable(run, split)
    if previous_unreadable and merge and opts.metrics is not None:
        raise MissingInputError(
            f"{run.metrics_path(split)} is unreadable, so a metric subset cannot be merged into it",
            hint=f"recompute every metric: `dmlbench evaluate {run.root} --split {split}` (without --metrics)",
        )
    prepared = open_or_prepare(cfg.dataset, places, on_event=on_event)
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
    if manifest.kind == "baseline" and manifest.baseline == "raw":
        check_raw_fits(cfg, len(query_rows) + (len(gallery_rows) if gallery_rows is not None else 0))

    def embed(rows: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray]:
        try:
            dataset = dataset_for_model(prepared, rows, cfg.model)
        except (OSError, ValueError) as err:  # a truncated or foreign images.npy
            raise MissingInputError(
                f"cannot read the prepared images of {cfg.dataset} in {prepared.root}: {err}",
                hint=f"re-prepare it: `dmlbench prepare {cfg.dataset} --force`",
            ) from None
        with intra_op_threads(cfg.schedule.threads):  # the run's own thread count: the embeddings depend on it
            return embed_dataset(
                model, dataset, device=target, batch_size=opts.batch_size, task=name, on_event=on_event
            )

    embeddings, labels = embed(query_rows, f"embed {split}" if gallery_rows is None else "embed query")
    gallery = gallery_labels = None
    if gallery_rows is not None:
        gallery, gallery_labels = embed(gallery_rows, "embed gallery")
    ks = list(opts.recall_k) if opts.recall_k else [int(k) for k in prepared.info.get("recall_k") or DEFAULT_RECALL_K]
    outcome = evaluate_embeddings(
        embeddings,
        labels,
        opts,
        gallery_embeddings=gallery,
        gallery_labels=gallery_labels,
        on_event=on_event,
        **_exclusion_groups(query_rows, gallery_rows),
        recall_k=ks,
        seed=int(cfg.seed),  # the run's own seed: k-means and samples of a run do not depend on the caller
        retrieval_sample=RETRIEVAL_SAMPLE if opts.retrieval_sample is None else opts.retrieval_sample,
    )
    if opts.save_embeddings:
        _save_array(run.embeddings_path(split), embeddings)
        _save_array(run.labels_path(split), labels)
        if gallery is not None and gallery_labels is not None:
            _save_array(run.embeddings_path(split, gallery=True), gallery)
            _save_array(run.labels_path(split, gallery=True), gallery_labels)
    record = metrics_record(
        outcome,
        run_id=manifest.run_id,
        split=split,
        seconds=time.perf_counter() - started,
        kmeans_niter=opts.kmeans_niter,
    )
    # written last: its presence means "evaluated"; an unreadable old file holds nothing left to keep
    with writing(run.metrics_path(split)):
        written = run.write_metrics(record, merge=merge and not previous_unreadable)
    # after the metrics: a failed metrics write must leave the folder as it was; this sample is an extra
    if outcome.retrieval is not None:
        with writing(run.retrieval_path(split)):
            run.write_retrieval(
                retrieval_record(
                    outcome.retrieval,
                    query_rows,
                    gallery_rows if gallery_rows is not None else query_rows,
                    run_id=manifest.run_id,
                    split=split,
                    dataset=cfg.dataset,
                    dataset_root=prepared.root,
                )
            )
    return EvalResult(metrics=written.metrics, path=run.metrics_path(split), outcome=outcome)


def _exclusion_groups(query_rows: pd.DataFrame, gallery_rows: pd.DataFrame | None) -> dict[str, Any]:
    """The index's sequence ids as evaluation exclusion groups (none when the dataset has no sequences)."""
    from dmlbench.datasets.prepared import SEQUENCE_COLUMN

    if SEQUENCE_COLUMN not in query_rows.columns:
        return {}
    groups = {"query_groups": query_rows[SEQUENCE_COLUMN].to_numpy(dtype="int64")}
    if gallery_rows is not None:
        groups["gallery_groups"] = gallery_rows[SEQUENCE_COLUMN].to_numpy(dtype="int64")
    return groups


def _stored_metrics_unreadable(run: RunDir, split: str) -> bool:
    """True when eval/<split>/metrics.json exists but cannot be parsed (so merging into it is impossible)."""
    try:
        run.read_metrics(split)
    except MissingInputError:
        return True
    return False


def check_raw_fits(cfg: Any, n_items: int) -> None:
    """Refuse raw-pixel vectors that cannot fit in memory (EnvironmentFailure) instead of being OOM-killed."""
    size = int(cfg.model.image_size or 0)
    dim = int(cfg.model.in_channels or 3) * size * size
    need = n_items * dim * 4 * 2  # float32 vectors plus their normalised copy
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if need > 0.8 * physical:
        raise EnvironmentFailure(
            f"raw pixels of {n_items} images at {size}x{size} need about {need / 2**30:.1f} GiB, "
            f"more than this machine's {physical / 2**30:.1f} GiB allow",
            hint="run the raw baseline on a machine with more memory",
        )


def _save_array(path: Path, array: np.ndarray) -> None:
    with writing(path), atomic_path(path) as tmp, tmp.open("wb") as handle:
        np.save(handle, array)


def metrics_record(
    outcome: EvalOutcome, *, run_id: str, split: str, seconds: float, kmeans_niter: int | None = None
) -> MetricsRecord:
    """What `eval/<split>/metrics.json` records of one scoring (every writer of that file builds it here)."""
    return MetricsRecord(
        run_id=run_id,
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
        seconds=round(seconds, 3),
        metric_seconds=round(outcome.seconds, 3),
        dmlbench_version=dmlbench.__version__,
        intervals={key: [low, high] for key, (low, high) in outcome.intervals.items()},
        approximation=outcome.approximation,
    )


def retrieval_record(
    sample: RetrievalSample,
    query_rows: pd.DataFrame,
    gallery_rows: pd.DataFrame,
    *,
    run_id: str,
    split: str,
    dataset: str,
    dataset_root: Path,
) -> RetrievalRecord:
    """The retrieval sample with array rows turned into the prepared dataset's image paths and labels."""
    query_paths, query_labels = query_rows["path"].astype(str).tolist(), query_rows["label"].tolist()
    gallery_paths, gallery_labels = gallery_rows["path"].astype(str).tolist(), gallery_rows["label"].tolist()
    entries = [
        RetrievedQuery(
            kind="worst" if kind == "worst" else "random",
            query=RetrievedItem(path=query_paths[q], label=int(query_labels[q])),
            neighbours=[
                RetrievedItem(path=gallery_paths[g], label=int(gallery_labels[g]), correct=bool(ok))
                for g, ok in zip(neighbours, correct, strict=True)
            ],
        )
        for q, kind, neighbours, correct in zip(
            sample.queries, sample.kinds, sample.neighbours, sample.correct, strict=True
        )
    ]
    k = max((len(n) for n in sample.neighbours), default=0)
    return RetrievalRecord(
        run_id=run_id, split=split, dataset=dataset, dataset_root=str(dataset_root), k=k, queries=entries
    )
