"""In-Shop Clothes Retrieval (DeepFashion): Eval/list_eval_partition.txt + img/ (folder or img.zip)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dmlbench.datasets.extract import ExtractResult, copy_tree, extract_archive
from dmlbench.datasets.sources.base import Source, SourceInputs, check_listed, wrong_input
from dmlbench.datasets.spec import DatasetSpec
from dmlbench.errors import ChecksumError
from dmlbench.events import EventHandler

PARTITION = "list_eval_partition.txt"
EXPECTED = f"a folder with Eval/{PARTITION} (or {PARTITION}) and img/ (or img.zip)"


def _map_img(name: str) -> str | None:
    return f"images/{name}" if name.startswith("img/") else None


def read_partition(path: Path) -> pd.DataFrame:
    """Line 1: count; line 2: header `image_name item_id evaluation_status`; then one row per image."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        count = int(lines[0].strip())
        if lines[1].split() != ["image_name", "item_id", "evaluation_status"]:
            raise ValueError(f"unexpected header {lines[1]!r}")
        rows = [line.split() for line in lines[2:] if line.strip()]
        if any(len(row) != 3 for row in rows) or len(rows) != count:
            raise ValueError(f"{len(rows)} rows of 3 fields expected {count}")
    except (IndexError, ValueError, UnicodeDecodeError) as err:
        raise ChecksumError(f"cannot parse {path.name}: {err}", hint=f"this is not DeepFashion's {PARTITION}") from None
    frame = pd.DataFrame(rows, columns=["rel", "item", "split"])
    bad = sorted(set(frame["split"]) - {"train", "query", "gallery"})
    if bad:
        raise ChecksumError(
            f"{path.name} has unknown evaluation_status {bad[0]!r}", hint="expected train/query/gallery"
        )
    # item ids look like id_00000002; the number is the label.
    try:
        frame["label"] = frame["item"].str.removeprefix("id_").astype("int64")
    except ValueError:
        raise ChecksumError(
            f"{path.name} has item ids that are not id_<number>", hint=f"this is not DeepFashion's {PARTITION}"
        ) from None
    frame["path"] = "images/" + frame["rel"]
    return frame[["path", "label", "split"]]


class InShopSource(Source):
    """Query/gallery protocol straight from the partition file."""

    def build(
        self, spec: DatasetSpec, inputs: SourceInputs, staging: Path, on_event: EventHandler | None
    ) -> pd.DataFrame:
        """Copy (or extract img.zip) the images and read the partition file."""
        folder = inputs.folder
        if folder is None:
            raise wrong_input(spec, inputs, EXPECTED)
        partition = next((p for p in (folder / "Eval" / PARTITION, folder / PARTITION) if p.is_file()), None)
        if partition is None:
            raise wrong_input(spec, inputs, EXPECTED)
        result: ExtractResult
        if (folder / "img").is_dir():
            result = copy_tree(folder, staging, _map_img, on_event=on_event, task="copy img")
        elif (folder / "img.zip").is_file():
            result = extract_archive(folder / "img.zip", staging, _map_img, on_event=on_event)
        else:
            raise wrong_input(spec, inputs, EXPECTED)
        frame = read_partition(partition)
        check_listed(frame["path"].tolist(), result, spec, str(folder))
        return frame
