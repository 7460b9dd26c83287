"""`dmlbench prepare`: download, verify and lay out a dataset (thin wrapper over dmlbench.datasets)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dmlbench.cli._output import ProgressRenderer, err, friendly_errors, out, printable, resolve_data_root, shown
from dmlbench.errors import UsageError


@friendly_errors
def command(
    name: Annotated[
        str | None, typer.Argument(metavar="NAME", help="Dataset name from the catalog (see --list).")
    ] = None,
    data_root: Annotated[
        Path | None,
        typer.Option(
            "--data-root", help="Prepared-data folder (default: $DMLBENCH_DATA_ROOT, else ~/.cache/dmlbench/data)."
        ),
    ] = None,
    from_path: Annotated[
        Path | None,
        typer.Option("--from", help="Use this downloaded archive, file or folder instead of downloading."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if the dataset is already prepared.")] = False,
    list_all: Annotated[bool, typer.Option("--list", help="List every dataset and whether it is prepared.")] = False,
    catalog: Annotated[
        list[Path] | None, typer.Option("--catalog", help="Extra catalog TOML file with your own datasets.")
    ] = None,
) -> None:
    """Download (with resume), verify and prepare a dataset; print images and classes per split."""
    from dmlbench.datasets import list_status, prepare

    root = resolve_data_root(data_root)
    extra = tuple(catalog or ())
    if list_all:
        table = Table("dataset", "prepared", "images per split", "title")
        for row in list_status(root, extra):
            counts = ", ".join(f"{split} {s['images']:,}" for split, s in row.splits.items())
            table.add_row(shown(row.name), "yes" if row.prepared else "no", counts or "-", shown(row.title))
        out.print(table)
        return
    if name is None:
        raise UsageError("missing dataset NAME", hint="e.g. `dmlbench prepare digits`; `--list` shows all datasets")
    with ProgressRenderer() as renderer:
        prepared = prepare(name, data_root=root, source=from_path, force=force, on_event=renderer, catalog=extra)
    info = prepared.info
    table = Table("split", "images", "classes", "labels", title=shown(f"{name}: {info['title']} ({info['protocol']})"))
    for split, s in info["splits"].items():
        table.add_row(split, f"{s['images']:,}", f"{s['classes']:,}", f"{s['label_min']}..{s['label_max']}")
    out.print(table)
    if not info.get("train_test_disjoint", True):
        err.print("[yellow]warning:[/] train and evaluation classes overlap; this is not a zero-shot DML split")
    out.print(printable(f"prepared in {prepared.root}"), markup=False, highlight=False)
