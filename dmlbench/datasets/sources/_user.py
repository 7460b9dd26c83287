"""What the two sources of the user's own files share: inputs from the recorded path, every image checked
and copied (dmlbench.datasets.images), duplicates, and the defaults fitted to the data at prepare."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dmlbench.config import MAX_SEED
from dmlbench.datasets.images import BadImage, Box, StoredImage, duplicate_groups, store_images
from dmlbench.datasets.sources.base import Source, SourceInputs, check_param_keys, int_param
from dmlbench.datasets.spec import DatasetSpec
from dmlbench.errors import ConfigError, MissingInputError, UsageError
from dmlbench.events import Event, EventHandler, emit

if TYPE_CHECKING:
    import pandas as pd

#: The images of a dataset from the user's files, in the prepared folder: images/<shard>/<row><suffix>.
IMAGES_DIR = "images"
CLASSES_FILE = "meta/classes.csv"  # label -> the user's class name (folder name or CSV label)
ORIGINS_FILE = "meta/origins.csv"  # stored path -> the user's file
SHARD = 1000  # files per folder: file systems slow down on folders of 100k entries
SMALL_IMAGE_SIDE = 96  # images up to this side train a small CNN from scratch at their own size
SMALL_CNN_MAX_SIZE = 64
PRETRAINED = ("googlenet", 224)  # larger photos: the paper's ImageNet backbone at its input size
MAX_LISTED = 5  # bad files or duplicate groups named in one error message
RECALL_K = (1, 2, 4, 8)


@dataclass(frozen=True)
class ImageJob:
    """One image to store: the user's file and how errors name it (the file, or the CSV row and file)."""

    source: Path
    where: str
    box: Box | None = None  # crop the stored copy to this region (OML CSV boxes)


# What `prepare PATH` records in a user dataset's spec (dmlbench/datasets/user.py writes them).
_USER_PARAMS = ("path", "split", "test_classes", "split_seed", "test_class_names", "allow_duplicates")
ORIGIN_STATE = "origin_state"  # source_info key: the user's folder or CSV as it was when prepared


def origin_state(path: Path) -> dict[str, int]:
    """A cheap fingerprint of the user's folder (every file below it) or CSV: how many files and the newest
    modification time (ns). Prepared copies do not follow edits of the originals; this says when there were
    some. An image replaced behind a CSV under the same name is not seen (the CSV alone is looked at)."""
    files, newest = 0, 0
    if path.is_dir():
        for folder, _, names in os.walk(path):
            for name in names:
                try:
                    modified = (Path(folder) / name).stat().st_mtime_ns
                except OSError:
                    continue  # removed while walking, or a dangling link: not counted, either time
                files, newest = files + 1, max(newest, modified)
    elif path.is_file():
        files, newest = 1, path.stat().st_mtime_ns
    return {"files": files, "newest_mtime_ns": newest}


class UserFilesSource(Source):
    """A source whose input is a path recorded in the spec (`params.path`), not catalog files."""

    def __init__(self) -> None:
        self.info: dict[str, Any] = {}
        self.stored: list[StoredImage] = []
        self.paths: list[str] = []  # stored relative paths, parallel to `stored`

    def default_inputs(self, spec: DatasetSpec) -> SourceInputs | None:
        """The path the dataset was prepared from (recorded in its spec)."""
        path = Path(str(spec.params.get("path", "")))
        if not path.exists():
            raise MissingInputError(
                f"{spec.name} is made from {path}, which does not exist",
                hint=f"pass the folder or CSV again: `dmlbench prepare PATH --name {spec.name} --force`",
            )
        # Taken before any file is read: an edit made while prepare runs shows up as a change next time.
        self.info[ORIGIN_STATE] = origin_state(path)
        return SourceInputs(folder=path if path.is_dir() else None, origin=str(path))

    @classmethod
    def check_params(cls, spec: DatasetSpec) -> None:
        """The params `prepare PATH` records (the path, the split rule, duplicates allowed), each bounded (a
        missing path is reported by `default_inputs`, when a prepare needs it)."""
        check_param_keys(spec, _USER_PARAMS)
        rule = spec.params.get("split", "fraction")
        if rule not in ("fraction", "alternate", "list"):
            raise ConfigError(f"[{spec.name}] params.split {rule!r} is unknown", hint="fraction, alternate or list")
        share = spec.params.get("test_classes", 0.5)
        if isinstance(share, (str, bool)) or not 0 < float(share) < 1:
            raise ConfigError(f"[{spec.name}] params.test_classes {share!r} is not a share in (0, 1)", hint="e.g. 0.5")
        int_param(spec, "split_seed", low=0, high=MAX_SEED, default=0)
        int_param(spec, "allow_duplicates", low=0, high=1, default=0)

    def gather(self, spec: DatasetSpec, path: Path) -> SourceInputs:
        raise UsageError(
            f"{spec.name} is made from the user's files; --from is not used for it",
            hint="run `dmlbench prepare PATH` with the folder or CSV itself",
        )

    def build_info(self) -> dict[str, Any]:
        return self.info

    def stale_reason(self, spec: DatasetSpec, info: dict[str, Any]) -> str | None:
        """The user's folder or CSV changed (files added, removed or modified) since it was prepared."""
        recorded = (info.get("source_info") or {}).get(ORIGIN_STATE)
        if not isinstance(recorded, dict):
            return None  # prepared before this was recorded
        path = Path(str(spec.params.get("path", "")))
        if not path.exists():
            return f"{spec.name} was prepared from {path}, which no longer exists (the prepared copy is used)"
        current = origin_state(path)
        if current == recorded:
            return None
        change = f"{recorded.get('files')} -> {current['files']} files"
        if current["files"] == recorded.get("files"):
            change = "files modified"
        return (
            f"{spec.name}: {path} changed since it was prepared ({change}); the prepared copy does not follow: "
            f"run `dmlbench prepare {path} --name {spec.name} --force` to prepare it again"
        )

    def store(self, spec: DatasetSpec, jobs: list[ImageJob], staging: Path, on_event: EventHandler | None) -> list[str]:
        """Check and copy every image (one error listing the bad ones); return the stored relative paths."""
        task = f"check {len(jobs):,} images"
        emit(on_event, Event("start", task, total=float(len(jobs)), unit="images"))
        stems = [f"{IMAGES_DIR}/{i // SHARD:04d}/{i:07d}" for i in range(len(jobs))]
        pairs = [(job.source, staging / stem, job.box) for job, stem in zip(jobs, stems, strict=True)]
        results = list(store_images(pairs, on_done=lambda n: emit(on_event, Event("advance", task, amount=float(n)))))
        emit(on_event, Event("finish", task))
        bad = [(job, result) for job, result in zip(jobs, results, strict=True) if isinstance(result, BadImage)]
        if bad:
            listed = "; ".join(f"{job.where}: {reason}" for job, reason in bad[:MAX_LISTED])
            more = f" (and {len(bad) - MAX_LISTED} more)" if len(bad) > MAX_LISTED else ""
            raise UsageError(
                f"{len(bad)} of {len(jobs):,} image(s) cannot be used: {listed}{more}",
                hint="fix or remove these files, then run prepare again (nothing was prepared)",
            )
        self.stored = [r for r in results if isinstance(r, StoredImage)]
        paths = [stem + stored.suffix for stem, stored in zip(stems, self.stored, strict=True)]
        self.paths = paths
        self._check_duplicates(spec, jobs)
        converted = [(job.where, s.converted) for job, s in zip(jobs, self.stored, strict=True) if s.converted]
        self.info["images_converted"] = len(converted)
        self.info["converted_examples"] = [f"{where}: {what}" for where, what in converted[:MAX_LISTED]]
        return paths

    def _check_duplicates(self, spec: DatasetSpec, jobs: list[ImageJob]) -> None:
        """Byte-identical files: an error listing them, unless `params.allow_duplicates` keeps (and records) them."""
        where = [job.where for job in jobs]
        # the same photo cropped to two boxes is two images; the same file and box twice is a duplicate
        keys = [f"{s.sha256} {job.box}" for job, s in zip(jobs, self.stored, strict=True)]
        groups = duplicate_groups(where, keys)
        self.info["duplicate_groups"] = len(groups)
        self.info["duplicates"] = groups[:100]
        if groups and not spec.params.get("allow_duplicates"):
            listed = "; ".join(" = ".join(group) for group in groups[:MAX_LISTED])
            more = f" (and {len(groups) - MAX_LISTED} more groups)" if len(groups) > MAX_LISTED else ""
            raise UsageError(
                f"{len(groups)} group(s) of byte-identical images: {listed}{more}",
                hint="remove the copies, or keep them with --allow-duplicates (they are then listed in "
                "prepared.json); a copy in train and test leaks the test set",
            )

    def write_classes(self, staging: Path, names: list[str]) -> None:
        """meta/classes.csv: label id -> the user's class name (ids are positions in sorted name order)."""
        import pandas as pd

        path = staging / CLASSES_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"label": range(len(names)), "name": names}).to_csv(path, index=False)

    def write_origins(self, staging: Path, paths: list[str], jobs: list[ImageJob]) -> None:
        import pandas as pd

        path = staging / ORIGINS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"path": paths, "original": [str(job.source) for job in jobs]}).to_csv(path, index=False)

    def fit_spec(self, spec: DatasetSpec, frame: pd.DataFrame) -> DatasetSpec:
        """The spec with a backbone, input size, channels, P x K and recall K that fit the prepared images."""
        if not self.stored:
            return spec
        rows = frame.drop_duplicates("path")
        by_path = dict(zip(self.paths, self.stored, strict=True))
        sides = np.array([min(by_path[p].width, by_path[p].height) for p in rows["path"]])
        side = int(np.median(sides))
        if side <= SMALL_IMAGE_SIDE:
            backbone, image_size = "small_cnn", min(side, SMALL_CNN_MAX_SIZE)
        else:
            backbone, image_size = PRETRAINED
        gray = all(by_path[p].gray for p in rows["path"])
        train = frame[frame["split"] == "train"]
        sizes = train["label"].value_counts().to_numpy()
        per_class = int(np.clip(np.percentile(sizes, 25) if len(sizes) else 2, 2, 8))
        eligible = int((sizes >= per_class).sum())
        if eligible < 2:
            raise UsageError(
                f"{spec.name}: the train split has {eligible} class(es) with at least {per_class} images",
                hint="metric learning trains on pairs of classes: give the train split at least 2 classes "
                "of 2 or more images (e.g. a smaller --test-classes)",
            )
        evaluated = frame[frame["split"] != "train"]
        candidates = max(1, len(evaluated) - 1)
        recall_k = tuple(k for k in RECALL_K if k <= candidates) or (1,)
        self.info["image_side_median"] = side
        self.info["fitted"] = {
            "backbone": backbone,
            "image_size": image_size,
            "channels": 1 if gray else 3,
            "batch": f"{min(8, eligible)} classes x {per_class} images",
        }
        return DatasetSpec.model_validate(
            spec.model_dump()
            | {
                "backbone": backbone,
                "image_size": image_size,
                "channels": 1 if gray else 3,
                "default_batch_classes": min(8, eligible),
                "default_batch_per_class": per_class,
                "recall_k": recall_k,
                "expect_classes": {
                    split: int(frame.loc[frame["split"] == split, "label"].nunique()) for split in spec.splits
                },
                "expect_images": {split: int((frame["split"] == split).sum()) for split in spec.splits},
            }
        )
