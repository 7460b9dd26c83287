"""Embeddings of the user's images or of a prepared split with a run's model, and the embeddings file.

The file is one `.npz` (numpy, no new dependency, readable anywhere with `np.load(allow_pickle=False)`):
`embeddings` float32 [N, D], `paths` (text), `labels` int64 [N] when known, `class_names` when labels came
from names, and `meta`, one JSON text: run, model fingerprint, source, preprocessing, dmlbench version.
The array names are `evaluation.files`' names, so `dmlbench evaluate --embeddings FILE` scores it as is.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import dmlbench
from dmlbench.errors import MissingInputError, UsageError
from dmlbench.evaluation.files import EMBEDDINGS_KEY, LABELS_KEY
from dmlbench.events import EventHandler
from dmlbench.rundir import RunDir
from dmlbench.utils.io import atomic_path, sha256_file

if TYPE_CHECKING:
    import torch

    from dmlbench.config import TrainConfig
    from dmlbench.datasets.prepared import PreparedDataset
    from dmlbench.inference.images import Preprocessing
    from dmlbench.paths import Places

PATHS_KEY, CLASS_NAMES_KEY, META_KEY = "paths", "class_names", "meta"
EMBEDDINGS_SUFFIX = ".npz"
PathArg = str | os.PathLike[str]
_REMAKE = "re-create it with `dmlbench embed`"


@dataclass
class RunModel:
    """A run's model in eval mode with what identifies it: its config and the fingerprint of its weights."""

    run: RunDir
    model: Any
    cfg: TrainConfig
    fingerprint: str
    device: torch.device


def load_run_model(run_dir: PathArg, device: str = "auto") -> RunModel:
    """The model of a complete run (a trained run's weights, or a baseline's network), on `device`."""
    from dmlbench.evaluation.trained import load_run_embedder
    from dmlbench.utils.device import resolve_device

    run = RunDir(run_dir)
    if not run.root.is_dir():
        raise MissingInputError(f"run directory {run.root} does not exist", hint="check the path (see `ls runs/`)")
    manifest = run.read_manifest()
    if manifest.kind == "ensemble":
        raise UsageError(f"{run.root} is an ensemble of fold models", hint="use one of its fold or final runs")
    trained = manifest.kind != "baseline"
    if trained and not run.model_path.is_file():
        raise MissingInputError(
            f"run {run.root} has no trained weights ({run.model_path} is missing)",
            hint=f"finish training it: `dmlbench train --run-dir {run.root} --resume`",
        )
    target = resolve_device(device)
    model, cfg = load_run_embedder(run, run.require_complete(), target)
    # A baseline's network follows from its config alone (seeded), so the config identifies it.
    fingerprint = sha256_file(run.model_path if trained else run.config_path)
    return RunModel(run, model, cfg, fingerprint, target)


def check_output(path: PathArg, suffix: str) -> Path:
    """`path` as the file to write: the right suffix, in a folder that exists (nothing is created)."""
    target = Path(path)
    if target.suffix.lower() != suffix:
        raise UsageError(f"{target} does not end in {suffix}", hint=f"name the output FILE{suffix}")
    if target.is_dir():
        raise UsageError(f"{target} is a folder", hint=f"name a file inside it, e.g. {target / ('out' + suffix)}")
    if not target.parent.is_dir():
        raise MissingInputError(
            f"the output folder {target.parent} does not exist", hint=f"create it first: mkdir -p {target.parent}"
        )
    return target


@dataclass
class Embeddings:
    """Vectors with where each came from; `labels` None when the source has none."""

    embeddings: np.ndarray
    paths: list[str]
    labels: np.ndarray | None = None
    class_names: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def _embed(rm: RunModel, dataset: Any, *, batch_size: int, task: str, on_event: EventHandler | None) -> np.ndarray:
    from dmlbench.evaluation.embed import embed_dataset
    from dmlbench.utils.cpu import intra_op_threads

    # the run's own thread count, as `evaluate` uses: float sums over another count differ in the last bits
    with intra_op_threads(rm.cfg.schedule.threads):
        vectors, _ = embed_dataset(
            rm.model, dataset, device=rm.device, batch_size=batch_size, task=task, on_event=on_event
        )
    return vectors


def _meta(rm: RunModel, source: dict[str, Any], pre: Preprocessing | None) -> dict[str, Any]:
    return {
        "run": str(rm.run.root.resolve()),
        "run_id": rm.run.run_id,
        "model_fingerprint": rm.fingerprint,
        "dataset": rm.cfg.dataset,
        "source": source,
        "preprocessing": pre.as_dict() if pre is not None else None,
        "dmlbench_version": dmlbench.__version__,
    }


def run_dataset(rm: RunModel, places: Places) -> PreparedDataset:
    """The run's own prepared dataset (prepared here when it is generated), whose preprocessing it learned."""
    from dmlbench.datasets import open_or_prepare

    return open_or_prepare(rm.cfg.dataset, places)


def embed_images(
    rm: RunModel,
    source: PathArg,
    *,
    places: Places,
    batch_size: int = 256,
    on_event: EventHandler | None = None,
) -> Embeddings:
    """Embed an image, a folder of images or a CSV of paths with the run's evaluation preprocessing."""
    from dmlbench.inference.images import images_dataset, list_images, run_preprocessing

    images = list_images(source)
    pre = run_preprocessing(rm.cfg, run_dataset(rm, places))
    dataset = images_dataset(images, pre, on_event=on_event)
    vectors = _embed(rm, dataset, batch_size=batch_size, task="embed images", on_event=on_event)
    meta = _meta(rm, {"images": str(Path(source).resolve())}, pre)
    return Embeddings(vectors, [str(p) for p in images.paths], images.labels, images.class_names, meta)


def split_rows(prepared: PreparedDataset, split: str) -> Any:
    """The rows of `split` in index.csv order (the order evaluation embeds them in)."""
    present = sorted(set(prepared.index["split"].astype(str)))
    if split not in present:
        raise UsageError(f"{prepared.name} has no split {split!r}", hint=f"its splits: {', '.join(present)}")
    return prepared.split(split)


def embed_split(
    rm: RunModel,
    dataset_name: str,
    split: str,
    *,
    places: Places,
    batch_size: int = 256,
    on_event: EventHandler | None = None,
) -> Embeddings:
    """Embed a prepared split exactly as `evaluate` does (same dataset class, preprocessing and order)."""
    from dmlbench.datasets import open_or_prepare
    from dmlbench.datasets.torch_data import dataset_for_model
    from dmlbench.inference.images import run_preprocessing

    prepared = open_or_prepare(dataset_name, places, on_event=on_event)
    rows = split_rows(prepared, split)
    try:
        dataset = dataset_for_model(prepared, rows, rm.cfg.model)
    except (OSError, ValueError) as err:
        raise MissingInputError(
            f"cannot read the prepared images of {dataset_name} in {prepared.root}: {err}",
            hint=f"re-prepare it: `dmlbench prepare {dataset_name} --force`",
        ) from None
    vectors = _embed(rm, dataset, batch_size=batch_size, task=f"embed {split}", on_event=on_event)
    pre = run_preprocessing(rm.cfg, prepared)
    meta = _meta(rm, {"dataset": dataset_name, "split": split, "fingerprint": prepared.fingerprint}, pre)
    labels = rows["label"].to_numpy(dtype=np.int64)
    # image files by absolute path, so search results can be opened; array rows keep their `images.npy#N` id
    paths = [p if prepared.is_array else str(prepared.root / p) for p in rows["path"].astype(str)]
    return Embeddings(vectors, paths, labels, None, meta)


def write_embeddings(path: PathArg, result: Embeddings) -> Path:
    """Write the embeddings file atomically (see the module docstring for its arrays)."""
    target = check_output(path, EMBEDDINGS_SUFFIX)
    arrays: dict[str, np.ndarray] = {
        EMBEDDINGS_KEY: np.ascontiguousarray(result.embeddings, dtype=np.float32),
        PATHS_KEY: np.array(result.paths, dtype=str),
        META_KEY: np.array(json.dumps(result.meta)),
    }
    if result.labels is not None:
        arrays[LABELS_KEY] = np.asarray(result.labels, dtype=np.int64)
    if result.class_names is not None:
        arrays[CLASS_NAMES_KEY] = np.array(result.class_names, dtype=str)
    with atomic_path(target) as tmp, tmp.open("wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]
    return target


def read_embeddings(path: PathArg) -> Embeddings:
    """An embeddings file written by `write_embeddings` (or any .npz/.npy with an `embeddings` array)."""
    from dmlbench.evaluation.core import as_matrix
    from dmlbench.evaluation.files import load_arrays

    source = Path(path)
    content = load_arrays(source)
    if isinstance(content, np.ndarray):
        content = {EMBEDDINGS_KEY: content}
    if EMBEDDINGS_KEY not in content:
        raise UsageError(
            f"{source} has no array named {EMBEDDINGS_KEY!r} (it holds: {', '.join(content) or 'nothing'})",
            hint="write it with `dmlbench embed`, or np.savez(FILE, embeddings=...)",
        )
    vectors = as_matrix(content[EMBEDDINGS_KEY], f"{source}:{EMBEDDINGS_KEY}")
    n = vectors.shape[0]
    paths = [str(p) for p in content[PATHS_KEY].tolist()] if PATHS_KEY in content else [f"#{i}" for i in range(n)]
    labels = content.get(LABELS_KEY)
    if len(paths) != n or (labels is not None and labels.reshape(-1).shape[0] != n):
        raise UsageError(f"{source}: its arrays hold different numbers of rows", hint=_REMAKE)
    names = [str(x) for x in content[CLASS_NAMES_KEY].tolist()] if CLASS_NAMES_KEY in content else None
    meta: dict[str, Any] = {}
    if META_KEY in content:
        try:
            meta = json.loads(str(content[META_KEY]))
        except json.JSONDecodeError:
            raise UsageError(f"{source}: its {META_KEY!r} is not JSON", hint=_REMAKE) from None
    return Embeddings(vectors, paths, None if labels is None else labels.reshape(-1).astype(np.int64), names, meta)
