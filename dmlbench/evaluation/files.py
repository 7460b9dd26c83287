"""Score embeddings produced elsewhere, read from files: .npy, .npz (named arrays) and .pt (tensors).

Arrays load through `dmlbench.utils.npy` (no pickles; a header is checked against the file's size before
anything is allocated) and `torch.load(weights_only=True)`: a file can hold numbers, never code.
`evaluate_files` is the embeddings-file form of `dmlbench evaluate`.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dmlbench.errors import MissingInputError, UsageError, first_line, require_file
from dmlbench.evaluation.core import EvalOptions, EvalOutcome, evaluate_embeddings, with_overrides
from dmlbench.events import EventHandler
from dmlbench.utils.npy import load_npy, load_npz

SUFFIXES = (".npy", ".npz", ".pt", ".pth")
EMBEDDINGS_KEY, LABELS_KEY = "embeddings", "labels"
GALLERY_EMBEDDINGS_KEY, GALLERY_LABELS_KEY = "gallery_embeddings", "gallery_labels"

PathArg = str | os.PathLike[str]


@dataclass(frozen=True)
class ExternalEmbeddings:
    """Arrays read from files; the gallery pair is present only for query-vs-gallery protocols."""

    embeddings: np.ndarray
    labels: np.ndarray
    gallery_embeddings: np.ndarray | None = None
    gallery_labels: np.ndarray | None = None


def _read(path: Path) -> dict[str, np.ndarray] | np.ndarray:
    """A single array, or a mapping name -> array for containers."""
    if path.is_dir():
        raise UsageError(f"{path} is a folder, not an array file", hint="pass the .npy/.npz/.pt file itself")
    require_file(path, what="array file", hint="check the --embeddings / --labels path")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise UsageError(
            f"{path}: unsupported file type {suffix or '(none)'}", hint=f"use one of {', '.join(SUFFIXES)}"
        )
    try:
        if suffix == ".npy":
            return load_npy(path)
        if suffix == ".npz":
            return load_npz(path)
        import torch

        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, RuntimeError, pickle.UnpicklingError) as err:
        reason = getattr(err, "strerror", None) or first_line(err)
        raise MissingInputError(
            f"cannot read {path}: {reason}",
            hint="the file is corrupt, unreadable or not an array file; re-export it (np.save / np.savez / torch.save)",
        ) from None
    return _from_torch(obj, path)


def load_arrays(path: PathArg) -> dict[str, np.ndarray] | np.ndarray:
    """The arrays of one .npy/.npz/.pt file (a mapping name -> array for containers), read safely."""
    return _read(Path(path))


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


def _check_rows(vectors: np.ndarray, labels: np.ndarray, vectors_path: Path, labels_path: Path) -> None:
    """Name both files when their row counts differ (evaluate_embeddings would only say "labels")."""
    if vectors.ndim == 0 or labels.ndim == 0:
        return  # not arrays of rows at all: evaluate_embeddings explains the expected shapes
    rows = vectors.shape[0]
    if labels.shape[0] != rows and labels.size != rows:
        raise UsageError(
            f"{labels_path} holds {labels.shape[0]} labels but {vectors_path} holds {vectors.shape[0]} rows",
            hint="embeddings and labels must come from the same items, in the same order",
        )


def load_embeddings(
    embeddings_path: PathArg,
    labels_path: PathArg | None = None,
    *,
    gallery_embeddings_path: PathArg | None = None,
    gallery_labels_path: PathArg | None = None,
) -> ExternalEmbeddings:
    """Read embeddings and labels; `labels_path=None` reads `labels` from the embeddings container.

    .npz/.pt containers may also hold `gallery_embeddings` + `gallery_labels` (query-vs-gallery
    protocol); separate gallery files work too (`gallery_labels_path=None`: the gallery container's
    `labels` or `gallery_labels`).
    """
    source = Path(embeddings_path)
    content = _read(source)
    if labels_path is None and (isinstance(content, np.ndarray) or len(content) == 1):
        raise UsageError(
            f"{source} holds a single array and no labels were given",
            hint="pass --labels FILE, or save both in one .npz/.pt with keys 'embeddings' and 'labels'",
        )
    embeddings = _pick(content, EMBEDDINGS_KEY, source, required=True)
    label_file = Path(labels_path) if labels_path is not None else source
    labels = _pick(content if labels_path is None else _read(label_file), LABELS_KEY, label_file, required=True)
    assert embeddings is not None and labels is not None
    _check_rows(embeddings, labels, source, label_file)
    gallery = gallery_labels = None
    if isinstance(content, dict):
        gallery = _pick(content, GALLERY_EMBEDDINGS_KEY, source, required=False)
        gallery_labels = _pick(content, GALLERY_LABELS_KEY, source, required=False)
    if gallery_embeddings_path is None and gallery_labels_path is not None:
        raise UsageError("gallery labels were given without gallery embeddings", hint="pass --gallery-embeddings too")
    if gallery_embeddings_path is not None:
        if gallery is not None:
            raise UsageError(
                f"{source} already holds a gallery, and gallery files were given too", hint="pass one gallery only"
            )
        gallery_file = Path(gallery_embeddings_path)
        gallery_content = _read(gallery_file)
        gallery = _pick(gallery_content, GALLERY_EMBEDDINGS_KEY, gallery_file, required=False)
        if gallery is None:
            gallery = _pick(gallery_content, EMBEDDINGS_KEY, gallery_file, required=True)
        if gallery_labels_path is not None:
            gallery_label_file = Path(gallery_labels_path)
            gallery_labels = _pick(_read(gallery_label_file), LABELS_KEY, gallery_label_file, required=True)
        elif isinstance(gallery_content, dict) and len(gallery_content) > 1:
            gallery_label_file = gallery_file
            gallery_labels = _pick(gallery_content, GALLERY_LABELS_KEY, gallery_file, required=False)
            if gallery_labels is None:
                gallery_labels = _pick(gallery_content, LABELS_KEY, gallery_file, required=True)
        else:
            raise UsageError(
                f"{gallery_file} holds a single array and no gallery labels were given",
                hint="pass --gallery-labels FILE, or save both in one .npz/.pt",
            )
        assert gallery is not None and gallery_labels is not None
        _check_rows(gallery, gallery_labels, gallery_file, gallery_label_file)
    return ExternalEmbeddings(embeddings, labels, gallery, gallery_labels)


def evaluate_files(
    embeddings: PathArg,
    labels: PathArg | None = None,
    options: EvalOptions | None = None,
    *,
    gallery_embeddings: PathArg | None = None,
    gallery_labels: PathArg | None = None,
    on_event: EventHandler | None = None,
    **overrides: Any,
) -> EvalOutcome:
    """`evaluate_embeddings` over arrays read from files (see `load_embeddings` for the layouts).

    Options are checked before any file is read; nothing is written.
    """
    opts = with_overrides(options, overrides)  # validated here, before any file is read
    loaded = load_embeddings(
        embeddings, labels, gallery_embeddings_path=gallery_embeddings, gallery_labels_path=gallery_labels
    )
    return evaluate_embeddings(
        loaded.embeddings,
        loaded.labels,
        opts,
        gallery_embeddings=loaded.gallery_embeddings,
        gallery_labels=loaded.gallery_labels,
        on_event=on_event,
    )
