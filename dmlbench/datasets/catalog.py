"""Read and validate datasets.toml (shipped with the package) plus optional user catalog files."""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dmlbench.datasets.prepared import INFO_FILE, dataset_dir, prepared_specs
from dmlbench.datasets.sources import SOURCES
from dmlbench.datasets.spec import DatasetSpec
from dmlbench.errors import ConfigError, MissingInputError, UnknownNameError, file_kind
from dmlbench.paths import Places, StrPath, check_name
from dmlbench.registry import did_you_mean
from dmlbench.utils import toml as tomllib
from dmlbench.utils.io import read_json

CATALOG_FILE = "datasets.toml"


def builtin_catalog_path() -> Path:
    """datasets.toml: inside the installed wheel, or at the repository root in an editable install."""
    packaged = importlib.resources.files("dmlbench") / CATALOG_FILE
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / CATALOG_FILE


def _describe(error: ValidationError) -> tuple[str, str]:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "(table)"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    return field, message


def parse_catalog(path: StrPath) -> dict[str, DatasetSpec]:
    """Parse one catalog file; every error names the file, the table and the field."""
    path = Path(path)
    kind = file_kind(path)
    if kind is not None:  # checked before reading: reading a FIFO would block forever
        raise ConfigError(
            f"cannot read catalog file {path}: it is {kind}", hint="pass a readable UTF-8 TOML file to --catalog"
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MissingInputError(f"catalog file {path} does not exist", hint="check the --catalog path") from None
    except (OSError, UnicodeDecodeError) as err:  # a folder, an unreadable or a binary file
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise ConfigError(
            f"cannot read catalog file {path}: {reason}", hint="pass a readable UTF-8 TOML file to --catalog"
        ) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}", hint="fix the syntax error") from None
    specs: dict[str, DatasetSpec] = {}
    for name, table in raw.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: top-level key {name!r} is not a table", hint="each dataset is a [name] table")
        try:
            check_name(name, "dataset name")  # it becomes <data_root>/<name>/
        except ConfigError as err:
            raise ConfigError(f"{path}: [{name}]: {err.message}", hint=err.hint) from None
        try:
            specs[name] = DatasetSpec(name=name, **table)
        except ValidationError as err:
            field, message = _describe(err)
            raise ConfigError(
                f"{path}: [{name}] field {field!r}: {message}",
                hint="see docs/datasets.md for the fields of a dataset table",
            ) from None
        except TypeError as err:  # e.g. a key that is also a keyword of DatasetSpec(name=...)
            raise ConfigError(
                f"{path}: [{name}]: {err}", hint="remove the 'name' key; the table name is the name"
            ) from None
        if specs[name].source not in SOURCES:
            source = specs[name].source
            raise ConfigError(
                f"{path}: [{name}] field 'source': unknown source {source!r}; {did_you_mean(source, SOURCES.names())}",
                hint=f"known sources: {', '.join(SOURCES.names())}",
            )
        try:
            SOURCES.get(specs[name].source).check_params(specs[name])
        except ConfigError as err:
            raise ConfigError(f"{path}: {err.message}", hint=err.hint) from None
    return specs


def catalog_specs(extra: Iterable[StrPath] = ()) -> dict[str, DatasetSpec]:
    """The built-in catalog plus the catalog files `extra`; a name defined twice is an error, never an override."""
    builtin = builtin_catalog_path()
    specs = parse_catalog(builtin)
    origin = dict.fromkeys(specs, builtin)
    for path in extra:
        for name, spec in parse_catalog(Path(path)).items():
            if name in specs:
                raise ConfigError(
                    f"{path}: dataset {name!r} is already defined in {origin[name]}",
                    hint="give your entry another name; catalog entries are never silently overridden",
                )
            specs[name] = spec
            origin[name] = Path(path)
    return specs


def load_catalog(places: Places | None = None) -> dict[str, DatasetSpec]:
    """Every dataset known at `places`: the built-in catalog, its extra catalogs, and every dataset prepared
    under its data root (`prepare PATH`, or a `--catalog` entry: its spec is recorded in its prepared.json,
    so later commands need neither the path nor the catalog). Without `places`: the built-in catalog only."""
    if places is None:
        return catalog_specs()
    specs = catalog_specs(places.catalogs)
    for name, spec in prepared_specs(places.data_root).items():
        if name in specs or spec.source not in SOURCES:
            continue  # a catalog given now wins; a source this version lacks cannot be opened anyway
        try:
            SOURCES.get(spec.source).check_params(spec)  # bounded as a catalog entry is
        except ConfigError:
            continue
        specs[name] = spec
    return specs


def get_spec(name: str, places: Places | None = None) -> DatasetSpec:
    """The spec of `name` among the datasets `load_catalog(places)` knows;
    UnknownNameError with did-you-mean when it is not one of them."""
    specs = load_catalog(places)
    if name not in specs:
        known = sorted(specs)
        raise UnknownNameError(
            f"unknown dataset {name!r}",
            hint=f"{did_you_mean(name, known)}known datasets: {', '.join(known)} (see `dmlbench prepare --list`); "
            "for your own images: `dmlbench prepare PATH` (a folder of class folders or an OML CSV)",
        )
    return specs[name]


def spec_to_table(spec: DatasetSpec) -> dict[str, Any]:
    """The TOML table of `spec` (without `name`), e.g. to write a user catalog entry."""
    table = spec.model_dump(mode="json", exclude={"name"}, exclude_none=True)
    return {key: value for key, value in table.items() if value not in ("", {}, [])}


@dataclass(frozen=True)
class DatasetStatus:
    """One row of `dmlbench prepare --list`."""

    name: str
    title: str
    prepared: bool
    splits: dict[str, dict[str, int]]
    path: Path
    stale: str | None = None  # why the prepared copy differs from what a prepare would build now


def list_status(places: Places) -> list[DatasetStatus]:
    """Every dataset known at `places` and whether it is prepared under its data root."""
    rows = []
    for name, spec in load_catalog(places).items():
        root = dataset_dir(name, places.data_root)
        splits: dict[str, dict[str, int]] = {}
        prepared = (root / INFO_FILE).is_file()
        stale = None
        if prepared:
            try:
                info = read_json(root / INFO_FILE)
            except ValueError:
                prepared = False
            else:
                splits = dict(info.get("splits", {}))
                stale = SOURCES.get(spec.source)().stale_reason(spec, info)
        rows.append(
            DatasetStatus(name=name, title=spec.title, prepared=prepared, splits=splits, path=root, stale=stale)
        )
    return rows
