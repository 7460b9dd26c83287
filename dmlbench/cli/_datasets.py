"""`--dataset PATH` on every command: a folder of class folders or an OML CSV is prepared (or found
prepared) first and the command goes on with its dataset name."""

from __future__ import annotations

from pathlib import Path

from dmlbench.cli._output import ProgressRenderer, resolve_data_root


def dataset_name(value: str | None, data_root: Path | None, *, quiet: bool = False) -> str | None:
    """`value` itself when it is a dataset name; for a path, the name of the dataset prepared from it."""
    from dmlbench.datasets.user import looks_like_path

    if value is None or not looks_like_path(value):
        return value
    return dataset_names([value], data_root, quiet=quiet)[0]


def dataset_names(values: list[str], data_root: Path | None, *, quiet: bool = False) -> list[str]:
    """`dataset_name` for a list (`bench --datasets`)."""
    from dmlbench.datasets.user import dataset_names as prepare_names
    from dmlbench.datasets.user import looks_like_path

    if not any(looks_like_path(value) for value in values):
        return values
    with ProgressRenderer(quiet=quiet) as renderer:
        return prepare_names(values, data_root=resolve_data_root(data_root), on_event=renderer)
