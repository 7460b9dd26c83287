"""A CSV in open-metric-learning's format, read verbatim.

Required columns: `label` (integer), `path` (absolute, or relative to the CSV's folder), `split` (train or
validation), `is_query`, `is_gallery` (on validation rows; both true = the row queries all other
gallery rows). Optional: `category`, `x_1, x_2, y_1, y_2` (a box to crop: left, right, top, bottom, in
pixels of the upright image; the stored copy is the crop, so rows may crop several objects out of
one photo) and `sequence` (rows sharing a sequence never count as each other's neighbours). Other
columns are ignored.

Validation rows become `query` and/or `gallery` rows of the index (a row that is both appears twice,
with one stored image). Index column `sequence` holds an integer per row: rows sharing an id are never
each other's neighbours; a row without a sequence gets an id of its own, shared by its query and gallery
rows, so a query never finds itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dmlbench.datasets.prepared import SEQUENCE_COLUMN
from dmlbench.datasets.sources._user import ImageJob, UserFilesSource
from dmlbench.datasets.sources.base import SourceInputs
from dmlbench.datasets.spec import DatasetSpec
from dmlbench.errors import MissingInputError, UsageError
from dmlbench.events import EventHandler

REQUIRED = ("label", "path", "split", "is_query", "is_gallery")
BOX = ("x_1", "x_2", "y_1", "y_2")
SPLITS = ("train", "validation")
_TRUE = frozenset({"true", "1", "1.0", "yes"})
_FALSE = frozenset({"false", "0", "0.0", "no"})
HINT = "see docs/datasets.md#open-metric-learning-csv for the format"


def read_csv(path: Path) -> pd.DataFrame:
    """The CSV as strings (empty cells ""), with the required columns checked."""
    if not path.is_file():
        raise MissingInputError(f"{path} does not exist", hint="pass the CSV file")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise UsageError(f"{path} is not a readable CSV: {err}", hint=HINT) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise UsageError(f"{path} has no column {missing[0]!r} (required: {', '.join(REQUIRED)})", hint=HINT)
    boxes = [c for c in BOX if c in frame.columns]
    if boxes and len(boxes) != len(BOX):
        raise UsageError(f"{path} has box column(s) {boxes} but not all of {', '.join(BOX)}", hint=HINT)
    if frame.empty:
        raise UsageError(f"{path} has no rows", hint=HINT)
    stripped: pd.DataFrame = frame.apply(lambda column: column.str.strip())
    return stripped


def _flag(value: str, column: str, where: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise UsageError(f"{where}: {column} is {value!r}, not true/false (or 1/0)", hint=HINT)


class OmlCsvSource(UserFilesSource):
    """Reads an open-metric-learning CSV; writes checked copies and train / query / gallery rows."""

    def build(
        self, spec: DatasetSpec, inputs: SourceInputs, staging: Path, on_event: EventHandler | None
    ) -> pd.DataFrame:
        """Check every row, then every image; return the index frame (with boxes and sequence ids)."""
        csv_path = Path(inputs.origin)
        raw = read_csv(csv_path)
        has_boxes = all(c in raw.columns for c in BOX)
        rows: list[dict[str, object]] = []
        jobs: list[ImageJob] = []
        records: list[dict[str, str]] = raw.to_dict("records")  # type: ignore[assignment]
        for i, record in enumerate(records):
            where = f"{csv_path.name} row {i + 2}"  # the header is line 1
            label_text = record["label"]
            try:
                label = int(label_text)
            except ValueError:
                raise UsageError(f"{where}: label {label_text!r} is not an integer", hint=HINT) from None
            if record["split"] not in SPLITS:
                raise UsageError(f"{where}: split {record['split']!r} is not train or validation", hint=HINT)
            if not record["path"]:
                raise UsageError(f"{where}: empty path", hint=HINT)
            source = Path(record["path"]).expanduser()
            source = source if source.is_absolute() else csv_path.parent / source
            if record["split"] == "validation":
                query = _flag(record["is_query"], "is_query", where)
                gallery = _flag(record["is_gallery"], "is_gallery", where)
                if not (query or gallery):
                    raise UsageError(f"{where}: a validation row with is_query and is_gallery both false", hint=HINT)
            else:
                query = gallery = False
            box = None
            if has_boxes and any(record[c] for c in BOX):
                box = self._box(record, where)
            rows.append(
                {
                    "label": label,
                    "split": record["split"],
                    "query": query,
                    "gallery": gallery,
                    "sequence": record.get("sequence", ""),
                }
            )
            jobs.append(ImageJob(source, f"{where} ({record['path']})", box))
        paths = self.store(spec, jobs, staging, on_event)
        self.write_origins(staging, paths, jobs)
        self.info["boxes_cropped"] = sum(job.box is not None for job in jobs)
        return self._index(rows, paths)

    @staticmethod
    def _box(record: dict[str, str], where: str) -> tuple[float, float, float, float]:
        try:
            x1, x2, y1, y2 = (float(record[c]) for c in BOX)
        except ValueError:
            raise UsageError(f"{where}: the box {[record[c] for c in BOX]} is not four numbers", hint=HINT) from None
        if not all(np.isfinite([x1, x2, y1, y2])) or x1 < 0 or y1 < 0 or x1 >= x2 or y1 >= y2:
            raise UsageError(
                f"{where}: box x_1={x1:g} x_2={x2:g} y_1={y1:g} y_2={y2:g} is not a box "
                "(0 <= x_1 < x_2, 0 <= y_1 < y_2)",
                hint=HINT,
            )
        return x1, y1, x2, y2

    def _index(self, rows: list[dict[str, object]], paths: list[str]) -> pd.DataFrame:
        names = sorted({str(r["sequence"]) for r in rows if r["sequence"]})
        sequence_ids = {name: i for i, name in enumerate(names)}
        out: list[dict[str, object]] = []
        for n, (row, path) in enumerate(zip(rows, paths, strict=True)):
            sequence = sequence_ids.get(str(row["sequence"]), len(names) + n)
            base = {"path": path, "label": row["label"], SEQUENCE_COLUMN: sequence}
            if row["split"] == "train":
                out.append({**base, "split": "train"})
            if row["query"]:
                out.append({**base, "split": "query"})
            if row["gallery"]:
                out.append({**base, "split": "gallery"})
        frame = pd.DataFrame(out)
        self.info.update(
            {
                "layout": "open-metric-learning CSV",
                "sequences": len(names),
                "both_query_and_gallery": int(sum(bool(r["query"]) and bool(r["gallery"]) for r in rows)),
            }
        )
        return frame
