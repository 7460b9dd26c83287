"""`dmlbench search`: nearest gallery items of query images or embeddings in an index."""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from dmlbench.cli._output import (
    ProgressRenderer,
    err,
    friendly_errors,
    out,
    printable,
    resolve_places,
    setup_logging,
    shown,
)
from dmlbench.errors import DmlbenchError, MissingInputError, UsageError


@friendly_errors
def command(
    index: Annotated[Path, typer.Argument(help="Index folder written by `dmlbench index`.")],
    images: Annotated[Path | None, typer.Option(help="Query image, folder of images or CSV with `path`.")] = None,
    embeddings: Annotated[Path | None, typer.Option(help="Query embeddings (.npz from `dmlbench embed`).")] = None,
    run: Annotated[
        Path | None, typer.Option("--run", help="Run that embeds --images (default: the index's run).")
    ] = None,
    k: Annotated[int, typer.Option("-k", help="Neighbours per query.")] = 10,
    nprobe: Annotated[int | None, typer.Option(help="IVF cells searched (overrides the index's).")] = None,
    ef_search: Annotated[int | None, typer.Option(help="HNSW efSearch (overrides the index's).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON rows instead of a table.")] = False,
    grid: Annotated[
        Path | None,
        typer.Option(help="Also draw the queries and their neighbours as a PNG (green: same class, red: other)."),
    ] = None,
    grid_queries: Annotated[int, typer.Option(help="Queries drawn in --grid (the first ones).", min=1)] = 16,
    device: Annotated[str, typer.Option(help="Device that embeds --images.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 256,
    data_root: Annotated[Path | None, typer.Option(help="Prepared-data folder (env: DMLBENCH_DATA_ROOT).")] = None,
) -> None:
    """Print the K nearest gallery items of each query: query, rank, neighbour path, label, score.

    Scores are cosine similarities (or minus squared L2 distances for a euclidean index): higher is closer.
    """
    setup_logging()
    from dmlbench.inference.embed import embed_images, load_run_model, read_embeddings
    from dmlbench.inference.index import check_k, check_same_model, load_index, neighbours, search

    if (images is None) == (embeddings is None):
        raise UsageError("give exactly one of --images or --embeddings", hint="see `dmlbench search --help`")
    if embeddings is not None and run is not None:
        raise UsageError("--run applies to --images only", hint="embeddings are already embedded; drop --run")
    if grid is not None and not grid.parent.is_dir():
        raise MissingInputError(f"the folder of --grid {grid} does not exist", hint="create it first")
    places = resolve_places(data_root)
    built = load_index(index)
    check_k(built, k)  # before any image is embedded
    if embeddings is not None:
        queries = read_embeddings(embeddings)
        check_same_model(built, queries.meta.get("model_fingerprint"), str(embeddings))
    else:
        assert images is not None
        run_dir = run if run is not None else built.meta.get("run")
        if not run_dir:
            raise UsageError(f"{index} records no run to embed images with", hint="pass --run RUN_DIR")
        model = load_run_model(run_dir, device)
        check_same_model(built, model.fingerprint, f"run {model.run.root}")
        with ProgressRenderer(quiet=as_json) as progress:
            queries = embed_images(model, images, places=places, batch_size=batch_size, on_event=progress)
    scores, positions = search(built, queries.embeddings, k, nprobe=nprobe, ef_search=ef_search)
    rows = neighbours(built, queries.paths, scores, positions)
    if grid is not None:
        _draw_grid(grid, built, queries, positions[:grid_queries], places.data_root)
    if as_json:
        out.print_json(json.dumps([asdict(row) for row in rows]))
        return
    table = Table(title=shown(f"{index}: {k} nearest of {len(queries.paths)} queries"), title_justify="left")
    for name, justify in (
        ("query", "left"),
        ("rank", "right"),
        ("neighbour", "left"),
        ("label", "left"),
        ("score", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        # paths and labels come from the index folder, which is untrusted like a run folder
        table.add_row(shown(row.query), str(row.rank), shown(row.path), shown(row.label), f"{row.score:.4f}")
    out.print(table)


def _draw_grid(path: Path, built: Any, queries: Any, positions: Any, data_root: Path) -> None:
    """The first queries and their neighbours as a PNG; a neighbour is correct when its class name (or id)
    is the query's, unknown (grey) when the queries carry no labels."""
    from dmlbench.datasets import open_prepared
    from dmlbench.reporting.grid import GridRow, NamedFileSource, draw_retrieval_grid, png_bytes
    from dmlbench.utils.io import write_bytes_atomic

    def class_of(labels: Any, names: list[str] | None, position: int) -> str | None:
        if labels is None:
            return None
        label = int(labels[position])
        return names[label] if names is not None else str(label)

    dataset = (built.meta.get("source") or {}).get("dataset")
    root = data_root
    if dataset:  # not prepared here: the gallery's array images draw as grey tiles rather than failing the search
        with contextlib.suppress(DmlbenchError):
            root = open_prepared(dataset, data_root).root
    lines = []
    for q, row in enumerate(positions):
        wanted = class_of(queries.labels, queries.class_names, q)
        shown = [
            (
                built.paths[int(p)],
                None if wanted is None else class_of(built.labels, built.class_names, int(p)) == wanted,
            )
            for p in row
            if p >= 0
        ]
        lines.append(GridRow(caption=f"q{q + 1}", query=queries.paths[q], neighbours=shown))
    write_bytes_atomic(path, png_bytes(draw_retrieval_grid(lines, NamedFileSource(root), title=f"{built.root}")))
    err.print(printable(f"retrieval grid: {path}"), markup=False, highlight=False)
