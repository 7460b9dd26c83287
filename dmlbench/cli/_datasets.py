"""`--dataset PATH` on every command: a folder of class folders or an OML CSV is prepared (or found
prepared) first and the command goes on with its dataset name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dmlbench.cli._output import ProgressRenderer

if TYPE_CHECKING:
    from dmlbench.paths import Places


def dataset_name(value: str | None, places: Places, *, quiet: bool = False) -> str | None:
    """`value` itself when it is a dataset name; for a path, the name of the dataset prepared from it."""
    from dmlbench.datasets.user import looks_like_path

    if value is None or not looks_like_path(value):
        return value
    return dataset_names([value], places, quiet=quiet)[0]


def dataset_names(values: list[str], places: Places, *, quiet: bool = False) -> list[str]:
    """`dataset_name` for a list (`bench --datasets`)."""
    from dmlbench.datasets.user import dataset_names as prepare_names
    from dmlbench.datasets.user import looks_like_path

    if not any(looks_like_path(value) for value in values):
        return values
    with ProgressRenderer(quiet=quiet) as renderer:
        return prepare_names(values, places, on_event=renderer)
