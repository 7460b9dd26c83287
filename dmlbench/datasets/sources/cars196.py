"""Cars196: `car_ims.tgz` + `cars_annos.mat` (archive or extracted), or the Kaggle by-classes-folder copy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dmlbench.datasets.download import magic_ok, read_head
from dmlbench.datasets.extract import ExtractResult, copy_tree, extract_archive
from dmlbench.datasets.prepared import BOX_COLUMNS
from dmlbench.datasets.sources.base import Source, SourceInputs, check_listed, wrong_input
from dmlbench.datasets.spec import DatasetSpec
from dmlbench.errors import ChecksumError
from dmlbench.events import EventHandler

EXPECTED = (
    "car_ims.tgz + cars_annos.mat, an extracted car_ims/ folder beside cars_annos.mat, or the Kaggle "
    "'stanford-car-dataset-by-classes-folder' (anno_train.csv, anno_test.csv, car_data/) as a folder or zip"
)
_ANNO_COLUMNS = ["fname", *BOX_COLUMNS, "label"]
_COLUMNS = ["path", "label", *BOX_COLUMNS]


def _map_car_ims(name: str) -> str | None:
    return f"images/{name[len('car_ims/') :]}" if name.startswith("car_ims/") else None


def _map_kaggle(name: str) -> str | None:
    """`.../{train,test}/<class name>/<fname>` -> `images/{train,test}/<fname>`; anno CSVs -> `meta/`."""
    parts = name.split("/")
    if parts[-1] in ("anno_train.csv", "anno_test.csv", "names.csv"):
        return f"meta/{parts[-1]}"
    if len(parts) >= 3 and parts[-3] in ("train", "test"):
        return f"images/{parts[-3]}/{parts[-1]}"
    return None


def read_cars_annos(path: Path) -> pd.DataFrame:
    """The `annotations` struct of cars_annos.mat as a frame (relative_im_path, boxes, class)."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path, squeeze_me=True, struct_as_record=True)
        ann = np.atleast_1d(mat["annotations"])
        return pd.DataFrame(
            {
                "rel": [str(p) for p in ann["relative_im_path"]],
                "x1": ann["bbox_x1"].astype(np.float64),
                "y1": ann["bbox_y1"].astype(np.float64),
                "x2": ann["bbox_x2"].astype(np.float64),
                "y2": ann["bbox_y2"].astype(np.float64),
                "label": ann["class"].astype(np.int64),
            }
        )
    except (KeyError, ValueError, TypeError, OSError) as err:
        raise ChecksumError(
            f"{path.name} has no usable 'annotations' struct ({type(err).__name__}: {err})",
            hint="this is not the Cars196 cars_annos.mat; get the right file",
        ) from None


def _read_anno_csv(path: Path, split: str) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, header=None, names=_ANNO_COLUMNS)
    except (pd.errors.ParserError, ValueError) as err:
        raise ChecksumError(f"cannot parse {path.name}: {err}", hint="the Kaggle CSV is damaged") from None
    frame["path"] = f"images/{split}/" + frame["fname"].astype(str)
    return frame


class Cars196Source(Source):
    """Labels are the official class ids 1..196 in both layouts (Kaggle CSV classes follow cars_meta order)."""

    def gather(self, spec: DatasetSpec, path: Path) -> SourceInputs:
        """A zip that is not a catalog file is taken as the Kaggle download."""
        if path.is_file() and path.name not in {f.name for f in spec.files} and magic_ok("zip", read_head(path)):
            return SourceInputs(archive=path, origin=f"--from {path}")
        return super().gather(spec, path)

    def build(
        self, spec: DatasetSpec, inputs: SourceInputs, staging: Path, on_event: EventHandler | None
    ) -> pd.DataFrame:
        """Dispatch on the layout found, then return path, label and boxes."""
        mat = inputs.files.get("cars_annos.mat")
        tgz = inputs.files.get("car_ims.tgz")
        if mat is not None and tgz is not None:
            result = extract_archive(tgz, staging, _map_car_ims, on_event=on_event)
            return self._from_mat(spec, mat, result, tgz.name)
        if mat is not None and inputs.folder is not None and (inputs.folder / "car_ims").is_dir():
            result = copy_tree(inputs.folder, staging, _map_car_ims, on_event=on_event, task="copy car_ims")
            return self._from_mat(spec, mat, result, str(inputs.folder / "car_ims"))
        if inputs.archive is not None:
            result = extract_archive(inputs.archive, staging, _map_kaggle, on_event=on_event)
            return self._from_kaggle(spec, inputs, staging, result, inputs.archive.name)
        if inputs.folder is not None and any(inputs.folder.rglob("anno_train.csv")):
            result = copy_tree(inputs.folder, staging, _map_kaggle, on_event=on_event, task="copy car_data")
            return self._from_kaggle(spec, inputs, staging, result, str(inputs.folder))
        raise wrong_input(spec, inputs, EXPECTED)

    def _from_mat(self, spec: DatasetSpec, mat: Path, result: ExtractResult, origin: str) -> pd.DataFrame:
        frame = read_cars_annos(mat)
        frame["path"] = "images/" + frame["rel"].str.rsplit("/", n=1).str[-1]
        check_listed(frame["path"].tolist(), result, spec, origin)
        return frame[_COLUMNS]

    def _from_kaggle(
        self, spec: DatasetSpec, inputs: SourceInputs, staging: Path, result: ExtractResult, origin: str
    ) -> pd.DataFrame:
        if not {"meta/anno_train.csv", "meta/anno_test.csv"} <= result.written:
            raise wrong_input(spec, inputs, EXPECTED)
        frame = pd.concat(
            [
                _read_anno_csv(staging / "meta/anno_train.csv", "train"),
                _read_anno_csv(staging / "meta/anno_test.csv", "test"),
            ],
            ignore_index=True,
        )
        check_listed(frame["path"].tolist(), result, spec, origin)
        frame["label"] = frame["label"].astype("int64")
        return frame[_COLUMNS]
