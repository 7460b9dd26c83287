"""Datasets from the user's files: `prepare PATH` (a folder of class folders, or an open-metric-learning
CSV) and `--dataset PATH` on every command.

The spec is made here from the path and the split options, then prepared like any catalog dataset;
prepared.json records it, so afterwards `--dataset NAME` finds it with no path and no catalog.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from dmlbench.datasets.catalog import catalog_specs
from dmlbench.datasets.pipeline import prepare
from dmlbench.datasets.prepared import USER_SOURCES, PreparedDataset, prepared_specs
from dmlbench.datasets.spec import DatasetSpec
from dmlbench.errors import MissingInputError, UsageError
from dmlbench.events import EventHandler
from dmlbench.paths import Places, StrPath

# Replaced by values fitted to the images when the dataset is prepared (UserFilesSource.fit_spec).
_PROVISIONAL = {
    "backbone": "small_cnn",
    "image_size": 32,
    "channels": 3,
    "recall_k": (1,),
    "default_batch_classes": 2,
    "default_batch_per_class": 2,
}
SPLIT_KEYS = ("split", "test_classes", "split_seed", "test_class_names")


def looks_like_path(value: str) -> bool:
    """Whether a `--dataset` value names files rather than a dataset: it holds a path separator or ends in
    .csv (`./pngs`, `~/photos/`, `data/df.csv`); a bare word is always a dataset name."""
    return "/" in value or "\\" in value or value.lower().endswith(".csv") or value.startswith("~")


def name_for(path: Path) -> str:
    """A dataset name from a folder or CSV name: lower case, other characters turned into '-'."""
    stem = path.name if path.is_dir() else path.stem
    name = re.sub(r"[^a-z0-9_.-]+", "-", stem.lower()).strip("-._")
    if not name:
        raise UsageError(f"cannot make a dataset name from {path}", hint="give one with --name")
    return name


def split_params(test_classes: str | None, split_seed: int | None) -> dict[str, int | float | str]:
    """`--test-classes` as spec params: a share (0.5), `alternate`, a text file of class names (one per line)
    or comma-separated class names; `--split-seed` draws the share."""
    if test_classes is None:
        if split_seed is not None:
            return {"split": "fraction", "test_classes": 0.5, "split_seed": split_seed}
        return {}
    value = test_classes.strip()
    if value == "alternate":
        return {"split": "alternate"}
    try:
        fraction = float(value)
    except ValueError:
        pass
    else:
        if not 0 < fraction < 1:
            raise UsageError(f"--test-classes {value} is not a share in (0, 1)", hint="e.g. --test-classes 0.5")
        return {"split": "fraction", "test_classes": fraction, "split_seed": split_seed or 0}
    listing = Path(value)
    if listing.is_file():
        names = [line.strip() for line in listing.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        names = [part.strip() for part in value.split(",") if part.strip()]
    if not names:
        raise UsageError("--test-classes lists no class", hint="e.g. --test-classes 'cat,dog' or a file")
    return {"split": "list", "test_class_names": "\n".join(names)}  # one name a line, as in a file


def user_spec(
    path: StrPath,
    *,
    name: str | None = None,
    test_classes: str | None = None,
    split_seed: int | None = None,
    allow_duplicates: bool = False,
) -> DatasetSpec:
    """The spec of a dataset made from `path` (before prepare fits its defaults to the images)."""
    source_path = Path(path).expanduser()
    if not source_path.exists():
        raise MissingInputError(f"{source_path} does not exist", hint="pass a folder of class folders or a CSV")
    source_path = source_path.resolve()
    is_csv = source_path.is_file()
    if is_csv and source_path.suffix.lower() != ".csv":
        raise UsageError(
            f"{source_path} is a file but not a .csv", hint="pass a folder of class folders or an OML CSV file"
        )
    params: dict[str, int | float | str] = {"path": str(source_path)}
    split = split_params(test_classes, split_seed)
    if is_csv and split:
        raise UsageError("--test-classes/--split-seed do not apply to a CSV", hint="the CSV's split column decides")
    params.update(split)
    if allow_duplicates:
        params["allow_duplicates"] = 1
    dataset = name or name_for(source_path)
    kind = "open-metric-learning CSV" if is_csv else "image folder"
    return DatasetSpec.model_validate(
        {
            "name": dataset,
            "title": f"{source_path.name} ({kind})",
            "source": "omlcsv" if is_csv else "imagefolder",
            "protocol": "query-gallery" if is_csv else "class-split",
            "split_rule": "ranges" if is_csv else "source",
            "params": params,
            **_PROVISIONAL,
        }
    )


def prepare_path(
    path: StrPath,
    places: Places,
    *,
    name: str | None = None,
    test_classes: str | None = None,
    split_seed: int | None = None,
    allow_duplicates: bool = False,
    force: bool = False,
    on_event: EventHandler | None = None,
) -> PreparedDataset:
    """Prepare the dataset made from `path` under `places.data_root` (instant when it already is, from that path).

    Without split options an existing preparation of the same path is reused whatever its split; with
    them, a different recorded split needs `force`.
    """
    from pydantic import ValidationError

    try:
        spec = user_spec(
            path, name=name, test_classes=test_classes, split_seed=split_seed, allow_duplicates=allow_duplicates
        )
    except ValidationError as err:
        first = err.errors()[0]
        raise UsageError(
            f"dataset name {name or Path(path).name!r}: {first['msg']}",
            hint="give a name of lower-case letters, digits and . _ - with --name",
        ) from None
    if spec.name in catalog_specs(places.catalogs):
        raise UsageError(
            f"{spec.name!r} is the name of a catalog dataset", hint="give your dataset another name with --name"
        )
    recorded = prepared_specs(places.data_root).get(spec.name)
    if recorded is not None and not force:
        _check_same(recorded, spec, given_split=test_classes is not None or split_seed is not None)
        spec = recorded
    return prepare(spec.name, places, force=force, on_event=on_event, spec=spec)


def _check_same(recorded: DatasetSpec, wanted: DatasetSpec, *, given_split: bool) -> None:
    """Refuse to reuse a prepared dataset of this name made from other files or with another split."""
    if recorded.source not in USER_SOURCES:
        raise UsageError(
            f"dataset {recorded.name!r} is already prepared from the {recorded.source!r} source of a catalog",
            hint="give this one another name with --name",
        )
    if recorded.params.get("path") != wanted.params.get("path"):
        raise UsageError(
            f"dataset {recorded.name!r} is already prepared from {recorded.params.get('path')}",
            hint="give this one another name with --name, or replace it with --force",
        )
    if given_split and _split_of(recorded) != _split_of(wanted):
        raise UsageError(
            f"dataset {recorded.name!r} is prepared with another split ({_describe(recorded)})",
            hint="rerun with --force to prepare it with the new split",
        )


def _split_of(spec: DatasetSpec) -> dict[str, object]:
    return {key: spec.params[key] for key in SPLIT_KEYS if key in spec.params}


def _describe(spec: DatasetSpec) -> str:
    split = _split_of(spec)
    return ", ".join(f"{key}={value}" for key, value in split.items()) or "the default split"


def dataset_names(values: Sequence[str], places: Places, *, on_event: EventHandler | None = None) -> list[str]:
    """`--dataset` values as dataset names: each path is prepared (or found prepared) first."""
    return [
        prepare_path(value, places, on_event=on_event).name if looks_like_path(value) else value for value in values
    ]
