"""Stanford Online Products: `Stanford_Online_Products.zip` or its extracted folder; splits from Ebay_*.txt."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dmlbench.datasets.sources.base import Source, SourceInputs, check_listed, extract_or_copy, wrong_input
from dmlbench.datasets.spec import DatasetSpec
from dmlbench.errors import ChecksumError
from dmlbench.events import EventHandler

ROOT = "Stanford_Online_Products"
# The 12 super-categories, super_class_id 1..12 in order; images live under `<category>_final/`.
CATEGORIES = (
    "bicycle",
    "cabinet",
    "chair",
    "coffee_maker",
    "fan",
    "kettle",
    "lamp",
    "mug",
    "sofa",
    "stapler",
    "table",
    "toaster",
)
LISTS = {"train": "Ebay_train.txt", "test": "Ebay_test.txt"}
EXPECTED = f"{ROOT}.zip or an extracted {ROOT}/ folder with Ebay_train.txt, Ebay_test.txt and <category>_final/"


def _map_member(name: str) -> str | None:
    if name.startswith(f"{ROOT}/"):
        name = name[len(ROOT) + 1 :]
    if name in ("Ebay_train.txt", "Ebay_test.txt", "Ebay_info.txt"):
        return f"meta/{name}"
    head = name.split("/", 1)[0]
    return f"images/{name}" if head.endswith("_final") and "/" in name else None


def _read_list(path: Path, split: str) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, sep=" ", header=0, dtype={"path": str})
    except (pd.errors.ParserError, ValueError) as err:
        raise ChecksumError(f"cannot parse {path.name}: {err}", hint="the list file is damaged") from None
    wanted = ["image_id", "class_id", "super_class_id", "path"]
    if list(frame.columns) != wanted:
        raise ChecksumError(
            f"{path.name} has columns {list(frame.columns)}, expected {wanted}",
            hint="this is not an SOP list file",
        )
    # Key on row order and path, not image_id: whether Ebay_test.txt restarts ids is not documented.
    return pd.DataFrame({"path": "images/" + frame["path"], "label": frame["class_id"].astype("int64"), "split": split})


class SopSource(Source):
    """Given split: Ebay_train.txt / Ebay_test.txt; labels are SOP class_id."""

    def build(
        self, spec: DatasetSpec, inputs: SourceInputs, staging: Path, on_event: EventHandler | None
    ) -> pd.DataFrame:
        """Extract (or copy) the images and read the two list files."""
        result, origin = extract_or_copy(
            spec,
            inputs,
            staging,
            _map_member,
            archive_name=f"{ROOT}.zip",
            root_name=ROOT,
            marker=LISTS["train"],
            expected=EXPECTED,
            on_event=on_event,
        )
        if not {f"meta/{name}" for name in LISTS.values()} <= result.written:
            raise wrong_input(spec, inputs, f"{EXPECTED} (no Ebay_train.txt/Ebay_test.txt in {origin})")
        frame = pd.concat(
            [_read_list(staging / "meta" / name, split) for split, name in LISTS.items()], ignore_index=True
        )
        check_listed(frame["path"].tolist(), result, spec, origin)
        return frame
