"""`dmlbench prepare`: download, verify and lay out a dataset (thin wrapper over dmlbench.datasets)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from dmlbench.cli._output import ProgressRenderer, err, friendly_errors, out, printable, resolve_places, shown
from dmlbench.errors import UsageError


@friendly_errors
def command(
    name: Annotated[
        str | None,
        typer.Argument(
            metavar="NAME|PATH",
            help="Dataset name from the catalog (see --list), or your own images: a folder of class "
            "subfolders or an open-metric-learning CSV (write ./pngs for a folder here).",
        ),
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
    dataset_name: Annotated[
        str | None, typer.Option("--name", help="PATH: the dataset's name (default: the folder or CSV name).")
    ] = None,
    test_classes: Annotated[
        str | None,
        typer.Option(
            "--test-classes",
            help="Folder PATH: test classes as a share drawn with --split-seed (default 0.5), 'alternate' "
            "(odd class ids), comma-separated class names, or a file of class names (one per line).",
        ),
    ] = None,
    split_seed: Annotated[
        int | None, typer.Option("--split-seed", help="Folder PATH: seed of the --test-classes draw (default 0).")
    ] = None,
    allow_duplicates: Annotated[
        bool,
        typer.Option("--allow-duplicates", help="PATH: keep byte-identical images (listed in prepared.json)."),
    ] = False,
) -> None:
    """Download (with resume), verify and prepare a dataset; print images and classes per split."""
    from dmlbench.datasets import catalog_specs, list_status, prepare
    from dmlbench.datasets.user import looks_like_path, prepare_path

    places = resolve_places(data_root, catalog=catalog)
    if list_all:
        table = Table("dataset", "prepared", "images per split", "title")
        rows = list_status(places)
        for row in rows:
            counts = ", ".join(f"{split} {s['images']:,}" for split, s in row.splits.items())
            state = "yes (stale)" if row.stale else "yes" if row.prepared else "no"
            table.add_row(shown(row.name), state, counts or "-", shown(row.title))
        out.print(table)
        for row in rows:
            if row.stale:
                err.print(f"[yellow]warning:[/] {shown(row.stale)}", highlight=False, soft_wrap=True)
        return
    if name is None:
        raise UsageError("missing dataset NAME", hint="e.g. `dmlbench prepare digits`; `--list` shows all datasets")
    is_path = looks_like_path(name) or (Path(name).exists() and name not in catalog_specs(places.catalogs))
    path_options = {"--name": dataset_name, "--test-classes": test_classes, "--split-seed": split_seed}
    if not is_path:
        given = [flag for flag, value in path_options.items() if value is not None]
        if allow_duplicates:
            given.append("--allow-duplicates")
        if given:
            raise UsageError(f"{given[0]} applies to `prepare PATH` only", hint=f"{name!r} is a catalog name")
    elif from_path is not None:
        raise UsageError("--from applies to catalog datasets only", hint="`prepare PATH` reads PATH itself")
    with ProgressRenderer() as renderer:
        if is_path:
            prepared = prepare_path(
                name,
                places,
                name=dataset_name,
                test_classes=test_classes,
                split_seed=split_seed,
                allow_duplicates=allow_duplicates,
                force=force,
                on_event=renderer,
            )
        else:
            prepared = prepare(name, places, source=from_path, force=force, on_event=renderer)
    name = prepared.name
    info = prepared.info
    table = Table("split", "images", "classes", "labels", title=shown(f"{name}: {info['title']} ({info['protocol']})"))
    for split, s in info["splits"].items():
        table.add_row(split, f"{s['images']:,}", f"{s['classes']:,}", f"{s['label_min']}..{s['label_max']}")
    out.print(table)
    if not info.get("train_test_disjoint", True):
        err.print("[yellow]warning:[/] train and evaluation classes overlap; this is not a zero-shot DML split")
    _print_user_facts(info)
    out.print(printable(f"prepared in {prepared.root}"), markup=False, highlight=False)


def _print_user_facts(info: dict[str, Any]) -> None:
    """What prepare decided for a dataset from the user's files: its defaults, conversions, duplicates."""
    source_info = info.get("source_info") or {}
    fitted = source_info.get("fitted")
    if not fitted:
        return
    out.print(
        f"defaults: backbone {fitted['backbone']}, input {fitted['image_size']} px, {fitted['channels']} "
        f"channel(s), batch {fitted['batch']}; use --dataset {info['name']} from now on",
        markup=False,
        highlight=False,
    )
    if source_info.get("images_converted"):
        examples = "; ".join(source_info.get("converted_examples", [])[:2])
        err.print(printable(f"normalised {source_info['images_converted']:,} image(s) (e.g. {examples})"), markup=False)
    for group in source_info.get("duplicates", [])[:5]:
        err.print(printable(f"warning: identical images: {' = '.join(group)}"), markup=False, highlight=False)
