"""A folder of class subfolders (the ImageFolder layout): `root/<class name>/**/<image>`.

Class ids are positions in the sorted list of folder names (meta/classes.csv keeps the table). The
train/test split is class-disjoint, by the rule in `params.split`: "fraction" (`test_classes` of the
classes, drawn with `split_seed`; the default is half, seed 0), "alternate" (odd ids test) or "list"
(`test_class_names`; every other class trains).
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd

from dmlbench.datasets.images import IMAGE_SUFFIXES
from dmlbench.datasets.sources._user import ImageJob, UserFilesSource
from dmlbench.datasets.sources.base import SourceInputs
from dmlbench.datasets.spec import DatasetSpec
from dmlbench.errors import UsageError
from dmlbench.events import Event, EventHandler, emit
from dmlbench.registry import did_you_mean

DEFAULT_TEST_CLASSES = 0.5
DEFAULT_SPLIT_SEED = 0


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def class_folders(root: Path) -> list[Path]:
    """The class subfolders of `root`, sorted by name (one error for a folder that is not this layout)."""
    if not root.is_dir():
        raise UsageError(f"{root} is not a folder", hint="pass a folder of class subfolders, or an OML CSV file")
    folders = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    loose = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if loose:
        raise UsageError(
            f"{root / loose[0]} is not inside a class folder ({len(loose)} image(s) directly in {root})",
            hint="the layout is ROOT/<class name>/<images>: move every image into its class's subfolder",
        )
    if len(folders) < 4:
        raise UsageError(
            f"{root} has {len(folders)} class subfolder(s); a class-disjoint train/test split needs at least 4",
            hint="the layout is ROOT/<class name>/<images>, one subfolder per class",
        )
    seen: dict[str, Path] = {}
    for folder in folders:
        key = unicodedata.normalize("NFC", folder.name)  # macOS writes decomposed accents
        if key in seen:
            raise UsageError(
                f"class folders {seen[key].name!r} and {folder.name!r} have the same name in different Unicode forms",
                hint="rename one of them",
            )
        seen[key] = folder
    return folders


def test_class_ids(spec: DatasetSpec, names: list[str]) -> set[int]:
    """The ids of the test classes under the spec's split rule."""
    rule = str(spec.params.get("split", "fraction"))
    n = len(names)
    if rule == "alternate":
        return set(range(1, n, 2))
    if rule == "list":
        listed = str(spec.params.get("test_class_names", "")).split("\n")
        index = {name: i for i, name in enumerate(names)}
        unknown = [name for name in listed if name not in index]
        if unknown:
            raise UsageError(
                f"test class {unknown[0]!r} is not a class folder",
                hint=f"{did_you_mean(unknown[0], names)}classes: {', '.join(names[:20])}" + (" ..." if n > 20 else ""),
            )
        chosen = {index[name] for name in listed}
    elif rule == "fraction":
        fraction = float(spec.params.get("test_classes", DEFAULT_TEST_CLASSES))  # type: ignore[arg-type]
        if not 0 < fraction < 1:
            raise UsageError(f"--test-classes {fraction} is not a share in (0, 1)", hint="e.g. --test-classes 0.5")
        count = round(fraction * n)
        seed = int(spec.params.get("split_seed", DEFAULT_SPLIT_SEED))  # type: ignore[arg-type]
        chosen = {int(i) for i in np.random.default_rng(seed).choice(n, size=count, replace=False)}
    else:
        raise UsageError(f"unknown split rule {rule!r}", hint="use a share (0.5), alternate, or class names")
    if len(chosen) < 2 or n - len(chosen) < 2:
        raise UsageError(
            f"the split leaves {n - len(chosen)} train and {len(chosen)} test classes of {n}; each side needs 2",
            hint="choose another --test-classes",
        )
    return chosen


class ImageFolderSource(UserFilesSource):
    """Reads ROOT/<class>/**/<image>; writes checked copies, the class table and a class-disjoint split."""

    def build(
        self, spec: DatasetSpec, inputs: SourceInputs, staging: Path, on_event: EventHandler | None
    ) -> pd.DataFrame:
        """Scan the class folders, check and copy every image, split the classes."""
        root = inputs.folder or Path(inputs.origin)
        folders = class_folders(root)
        names = [folder.name for folder in folders]
        jobs: list[ImageJob] = []
        labels: list[int] = []
        skipped: list[str] = []
        for label, folder in enumerate(folders):
            files = sorted(p for p in folder.rglob("*") if p.is_file() and not _hidden(p, root))
            images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
            skipped += [str(p.relative_to(root)) for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
            if not images:
                raise UsageError(
                    f"class folder {folder} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})",
                    hint="remove the empty folder or add its images",
                )
            jobs += [ImageJob(p, str(p.relative_to(root))) for p in images]
            labels += [label] * len(images)
        if skipped:
            emit(
                on_event,
                Event("log", spec.name, message=f"skipped {len(skipped)} non-image file(s), e.g. {skipped[0]}"),
            )
        test_ids = test_class_ids(spec, names)
        paths = self.store(spec, jobs, staging, on_event)
        self.write_classes(staging, names)
        self.write_origins(staging, paths, jobs)
        self.info.update(
            {
                "layout": "image folder",
                "classes": len(names),
                "skipped_files": len(skipped),
                "split_rule": str(spec.params.get("split", "fraction")),
            }
        )
        label_array = np.asarray(labels, dtype=np.int64)
        split = np.where(np.isin(label_array, sorted(test_ids)), "test", "train")
        return pd.DataFrame({"path": paths, "label": label_array, "split": split})
