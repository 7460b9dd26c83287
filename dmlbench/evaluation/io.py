"""Load embeddings produced elsewhere: .npy, .npz (named arrays) and .pt (tensors, weights_only)."""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dmlbench.errors import MissingInputError, UsageError

SUFFIXES = (".npy", ".npz", ".pt", ".pth")
EMBEDDINGS_KEY, LABELS_KEY = "embeddings", "labels"
GALLERY_EMBEDDINGS_KEY, GALLERY_LABELS_KEY = "gallery_embeddings", "gallery_labels"


@dataclass(frozen=True)
class ExternalEmbeddings:
    """Arrays read from files; the gallery pair is present only for query-vs-gallery protocols."""

    embeddings: np.ndarray
    labels: np.ndarray
    gallery_embeddings: np.ndarray | None = None
    gallery_labels: np.ndarray | None = None


def _read(path: Path) -> dict[str, np.ndarray] | np.ndarray:
    """A single array, or a mapping name -> array for containers."""
    if not path.is_file():
        raise MissingInputError(f"{path} does not exist", hint="check the --embeddings / --labels path")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise UsageError(
            f"{path}: unsupported file type {suffix or '(none)'}", hint=f"use one of {', '.join(SUFFIXES)}"
        )
    try:
        if suffix == ".npy":
            return np.asarray(np.load(path, allow_pickle=False))
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return {name: np.asarray(archive[name]) for name in archive.files}
        import torch

        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, RuntimeError, pickle.UnpicklingError) as err:
        raise MissingInputError(
            f"cannot read {path}: {str(err).splitlines()[0] if str(err) else type(err).__name__}",
            hint="the file is corrupt or not an array file; re-export it (np.save / np.savez / torch.save)",
        ) from err
    return _from_torch(obj, path)


def _tensor_to_numpy(tensor: Any) -> np.ndarray:
    """A tensor as a numpy array; bfloat16, which numpy lacks, goes through float32."""
    import torch

    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return np.asarray(tensor.numpy())


def _from_torch(obj: Any, path: Path) -> dict[str, np.ndarray] | np.ndarray:
    if hasattr(obj, "detach"):
        return _tensor_to_numpy(obj)
    if isinstance(obj, dict):
        arrays = {str(k): _tensor_to_numpy(v) for k, v in obj.items() if hasattr(v, "detach")}
        if arrays:
            return arrays
    raise UsageError(f"{path} holds a {type(obj).__name__}, not a tensor", hint="torch.save a tensor or a dict of them")


def _pick(content: dict[str, np.ndarray] | np.ndarray, key: str, path: Path, *, required: bool) -> np.ndarray | None:
    if isinstance(content, np.ndarray):
        return content
    if key in content:
        return content[key]
    if len(content) == 1 and key in (EMBEDDINGS_KEY, LABELS_KEY):
        return next(iter(content.values()))
    if required:
        raise UsageError(
            f"{path} has no array named {key!r} (it holds: {', '.join(content) or 'nothing'})",
            hint=f"save the arrays under the names {EMBEDDINGS_KEY!r} and {LABELS_KEY!r}",
        )
    return None


def load_embeddings(embeddings_path: Path, labels_path: Path | None = None) -> ExternalEmbeddings:
    """Read embeddings and labels; `labels_path=None` reads `labels` from the embeddings container.

    .npz/.pt containers may also hold `gallery_embeddings` + `gallery_labels` (query-vs-gallery protocol).
    """
    content = _read(Path(embeddings_path))
    if labels_path is None and (isinstance(content, np.ndarray) or len(content) == 1):
        raise UsageError(
            f"{embeddings_path} holds a single array and no labels were given",
            hint="pass --labels FILE, or save both in one .npz/.pt with keys 'embeddings' and 'labels'",
        )
    embeddings = _pick(content, EMBEDDINGS_KEY, Path(embeddings_path), required=True)
    label_source = content if labels_path is None else _read(Path(labels_path))
    labels = _pick(label_source, LABELS_KEY, Path(labels_path or embeddings_path), required=True)
    gallery = gallery_labels = None
    if isinstance(content, dict):
        gallery = _pick(content, GALLERY_EMBEDDINGS_KEY, Path(embeddings_path), required=False)
        gallery_labels = _pick(content, GALLERY_LABELS_KEY, Path(embeddings_path), required=False)
    assert embeddings is not None and labels is not None
    return ExternalEmbeddings(embeddings, labels, gallery, gallery_labels)
