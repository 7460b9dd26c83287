"""The canonical prepared layout: `<data_root>/<name>/{images/ | images.npy, index.csv, prepared.json}`.

`prepared.json` is written last and atomically; its presence means "prepared".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

import dmlbench
from dmlbench.datasets.spec import DatasetSpec
from dmlbench.errors import MissingInputError
from dmlbench.paths import StrPath, child_path, default_data_root
from dmlbench.utils.io import SCHEMA_VERSION, read_json, refuse_links, write_json_atomic

if TYPE_CHECKING:
    import pandas as pd

INDEX_FILE = "index.csv"
INFO_FILE = "prepared.json"
ARRAY_FILE = "images.npy"
IMAGES_DIR = "images"
META_DIR = "meta"
RAW_DIR = "raw"  # verified downloads and resumable `.part` files
PREPARE_LOCK = ".prepare.lock"  # one prepare per dataset folder at a time
CACHE_DIR = "decode-cache"  # decoded, resized images of one preprocessing each (datasets/cache.py)
BOX_COLUMNS = ("x1", "y1", "x2", "y2")
# Optional integer column: rows sharing a value are never each other's neighbours in evaluation
# (open-metric-learning's `sequence`; a query and its own gallery row share one too).
SEQUENCE_COLUMN = "sequence"
#: Sources of datasets made from the user's files: their spec lives in their prepared.json, not a catalog.
USER_SOURCES = frozenset({"imagefolder", "omlcsv"})
# Every name `prepare` writes in a dataset folder, folders before what they hold (its downloads are
# `raw/<file>` and `raw/<file>.part` for each catalog file; the staging folder is made fresh each time).
DATASET_PATHS = (PREPARE_LOCK, INFO_FILE, INDEX_FILE, ARRAY_FILE, IMAGES_DIR, META_DIR, RAW_DIR, CACHE_DIR)


def download_names(spec: DatasetSpec) -> tuple[str, ...]:
    """`raw/<file>` and `raw/<file>.part` of each catalog file, relative to the dataset folder."""
    return tuple(f"{RAW_DIR}/{f.name}{suffix}" for f in spec.files for suffix in ("", ".part"))


def check_no_links(root: Path, spec: DatasetSpec) -> None:
    """ConfigError naming the first link planted at a name `prepare` writes in the dataset folder `root`.

    A dataset folder is copied between machines like a run folder: before a prepare writes, replaces or
    removes anything, no name it owns may be a link (the folder itself may: the user chose it).
    """
    refuse_links(root, (*DATASET_PATHS, *download_names(spec)))


@dataclass(frozen=True)
class PreparedDataset:
    """A prepared dataset on disk: `root`, its `info` (prepared.json) and its `index` (index.csv)."""

    name: str
    root: Path
    info: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        """sha256 of index.csv: identifies exactly which images and labels a run used."""
        return str(self.info["index_sha256"])

    @property
    def is_array(self) -> bool:
        """True for datasets stored as one images.npy (digits, fashion-mnist, synthetic)."""
        return (self.root / ARRAY_FILE).is_file()

    @cached_property
    def index(self) -> pd.DataFrame:
        """index.csv: path, label, split (+ x1, y1, x2, y2)."""
        import pandas as pd

        frame = pd.read_csv(self.root / INDEX_FILE, dtype={"path": str, "split": str})
        frame["label"] = frame["label"].astype("int64")
        return frame

    def split(self, name: str) -> pd.DataFrame:
        """The rows of one split (train/test or train/query/gallery)."""
        return self.index[self.index["split"] == name].reset_index(drop=True)


def dataset_dir(name: str, data_root: StrPath) -> Path:
    """Where dataset `name` lives under `data_root` (a name that is not a plain name is refused)."""
    return child_path(Path(data_root), name, "dataset name")


def open_prepared(name: str, data_root: StrPath | None = None) -> PreparedDataset:
    """Open a prepared dataset; MissingInputError (exit 3) naming `dmlbench prepare NAME` when it is not."""
    root = dataset_dir(name, data_root if data_root is not None else default_data_root())
    info_path = root / INFO_FILE
    if not info_path.is_file():
        raise MissingInputError(
            f"dataset {name!r} is not prepared in {root.parent}",
            hint=f"run `dmlbench prepare {name}` (with the same --data-root) first",
        )
    try:
        info = read_json(info_path)
    except ValueError as err:
        raise MissingInputError(str(err), hint=f"rerun `dmlbench prepare {name} --force`") from None
    version = info.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise MissingInputError(
            f"{info_path} has schema_version {version!r}; this dmlbench reads up to {SCHEMA_VERSION}",
            hint=f"upgrade dmlbench or rerun `dmlbench prepare {name} --force`",
        )
    if not (root / INDEX_FILE).is_file():
        raise MissingInputError(f"{root / INDEX_FILE} is missing", hint=f"rerun `dmlbench prepare {name} --force`")
    return PreparedDataset(name=name, root=root, info=info)


def load_index(name: str, data_root: StrPath | None = None) -> pd.DataFrame:
    """index.csv of a prepared dataset as a DataFrame (path relative to the dataset folder, label, split)."""
    return open_prepared(name, data_root).index


def split_summary(frame: pd.DataFrame, splits: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """Images, classes and label range per split."""
    summary: dict[str, dict[str, int]] = {}
    for split in splits:
        labels = frame.loc[frame["split"] == split, "label"]
        summary[split] = {
            "images": len(labels),
            "classes": int(labels.nunique()),
            "label_min": int(labels.min()) if len(labels) else 0,
            "label_max": int(labels.max()) if len(labels) else 0,
        }
    return summary


def write_info(
    root: Path,
    spec: DatasetSpec,
    frame: pd.DataFrame,
    index_bytes: bytes,
    *,
    disjoint: bool,
    image_size: list[int] | None,
    source_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write prepared.json (atomically, last) and return its payload (`source_info` only when given)."""
    payload: dict[str, Any] = {
        "name": spec.name,
        "title": spec.title,
        "protocol": spec.protocol,
        "spec_sha256": spec.fingerprint(),
        "index_sha256": hashlib.sha256(index_bytes).hexdigest(),
        "dmlbench_version": dmlbench.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "image_size": image_size,
        "channels": spec.channels,
        "recall_k": list(spec.recall_k),
        "splits": split_summary(frame, spec.splits),
        "train_test_disjoint": disjoint,
        "has_boxes": all(c in frame.columns for c in BOX_COLUMNS),
        "spec": spec.model_dump(mode="json"),
    }
    if source_info:
        payload["source_info"] = source_info
    write_json_atomic(root / INFO_FILE, payload)
    return {"schema_version": SCHEMA_VERSION, **payload}


def prepared_specs(data_root: StrPath) -> dict[str, DatasetSpec]:
    """The specs recorded by the datasets prepared under `data_root` (from the user's files or from a catalog
    entry): what they were prepared from, so later commands need neither the path nor the catalog again."""
    root = Path(data_root)
    specs: dict[str, DatasetSpec] = {}
    if not root.is_dir():
        return specs
    for info_path in sorted(root.glob(f"*/{INFO_FILE}")):
        try:
            recorded = read_json(info_path).get("spec")
        except (ValueError, OSError):
            continue  # an unreadable prepared.json is reported when that dataset is opened
        if not isinstance(recorded, dict):
            continue
        try:
            spec = DatasetSpec.model_validate(recorded)
        except ValidationError:
            continue
        if spec.name == info_path.parent.name:
            specs[spec.name] = spec
    return specs
