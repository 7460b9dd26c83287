"""CUB-200-2011: `CUB_200_2011.tgz` or its extracted `CUB_200_2011/` folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dmlbench.datasets.prepared import BOX_COLUMNS
from dmlbench.datasets.sources.base import Source, SourceInputs, check_listed, extract_or_copy, wrong_input
from dmlbench.datasets.spec import DatasetSpec
from dmlbench.errors import ChecksumError
from dmlbench.events import EventHandler

ROOT = "CUB_200_2011"
META = ("images.txt", "image_class_labels.txt", "classes.txt", "train_test_split.txt", "bounding_boxes.txt")
EXPECTED = f"{ROOT}.tgz or an extracted {ROOT}/ folder with images.txt and images/"


def _map_member(name: str) -> str | None:
    """`CUB_200_2011/images/...` -> `images/...`; the metadata files -> `meta/`; the rest is skipped."""
    if name.startswith(f"{ROOT}/"):
        name = name[len(ROOT) + 1 :]
    if name.startswith("images/"):
        return name
    if name in META:
        return f"meta/{name}"
    return None


def _read_table(path: Path, names: list[str]) -> pd.DataFrame:
    try:
        return pd.read_csv(path, sep=" ", header=None, names=names, engine="c")
    except (pd.errors.ParserError, ValueError) as err:
        raise ChecksumError(f"cannot parse {path.name}: {err}", hint="the metadata file is damaged") from None


class Cub200Source(Source):
    """Reads images.txt, image_class_labels.txt and bounding_boxes.txt; labels are the official 1..200."""

    def build(
        self, spec: DatasetSpec, inputs: SourceInputs, staging: Path, on_event: EventHandler | None
    ) -> pd.DataFrame:
        """Extract (or copy) images and metadata, then join the metadata into the index frame."""
        result, origin = extract_or_copy(
            spec,
            inputs,
            staging,
            _map_member,
            archive_name=f"{ROOT}.tgz",
            root_name=ROOT,
            marker="images.txt",
            expected=EXPECTED,
            on_event=on_event,
        )
        absent = [name for name in ("images.txt", "image_class_labels.txt") if f"meta/{name}" not in result.written]
        if absent:
            raise wrong_input(spec, inputs, f"{EXPECTED} (no {absent[0]} in {origin})")
        meta = staging / "meta"
        images = _read_table(meta / "images.txt", ["image_id", "rel"])
        labels = _read_table(meta / "image_class_labels.txt", ["image_id", "label"])
        frame = images.merge(labels, on="image_id", how="left", validate="one_to_one")
        if frame["label"].isna().any():
            raise ChecksumError(
                f"image_class_labels.txt has no label for {int(frame['label'].isna().sum())} image(s)",
                hint="the metadata files do not belong together",
            )
        if "meta/bounding_boxes.txt" in result.written:
            boxes = _read_table(meta / "bounding_boxes.txt", ["image_id", "x", "y", "w", "h"])
            frame = frame.merge(boxes, on="image_id", how="left", validate="one_to_one")
            frame["x1"], frame["y1"] = frame["x"], frame["y"]
            frame["x2"], frame["y2"] = frame["x"] + frame["w"], frame["y"] + frame["h"]
        frame["path"] = "images/" + frame["rel"].astype(str)
        check_listed(frame["path"].tolist(), result, spec, origin)
        columns = ["path", "label"] + [c for c in BOX_COLUMNS if c in frame]
        out = frame[columns].copy()
        out["label"] = out["label"].astype("int64")
        return out
