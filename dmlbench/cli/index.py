"""`dmlbench index`: a faiss index of a gallery (a run's prepared split, or an embeddings file)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from dmlbench.cli._output import ProgressRenderer, friendly_errors, out, printable, resolve_places, setup_logging
from dmlbench.errors import UsageError

A = "Approximate index parameters"


@friendly_errors
def command(
    run_dir: Annotated[Path | None, typer.Argument(help="Run directory whose model embeds --dataset.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Index folder to write.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Prepared dataset to index with RUN_DIR's model.")] = None,
    split: Annotated[str, typer.Option(help="Split of --dataset to index.")] = "test",
    embeddings: Annotated[
        Path | None, typer.Option(help="Index these embeddings (.npz from `dmlbench embed`) instead.")
    ] = None,
    index: Annotated[str, typer.Option("--index", help="flat (exact), ivf, ivfpq or hnsw.")] = "flat",
    distance: Annotated[str, typer.Option(help="cosine (on L2-normalised vectors) or euclidean.")] = "cosine",
    nlist: Annotated[int | None, typer.Option(help="IVF cells (ivf, ivfpq).", rich_help_panel=A)] = None,
    nprobe: Annotated[int | None, typer.Option(help="IVF cells searched (default 8).", rich_help_panel=A)] = None,
    m: Annotated[
        int | None, typer.Option("--m", help="PQ sub-quantizers (ivfpq) / HNSW links (hnsw).", rich_help_panel=A)
    ] = None,
    nbits: Annotated[int | None, typer.Option(help="Bits per PQ code (ivfpq).", rich_help_panel=A)] = None,
    ef_search: Annotated[int | None, typer.Option(help="HNSW efSearch (default 64).", rich_help_panel=A)] = None,
    ef_construction: Annotated[
        int | None, typer.Option(help="HNSW efConstruction (default 40).", rich_help_panel=A)
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing index folder.")] = False,
    device: Annotated[str, typer.Option(help="Device that embeds --dataset: auto, cpu, cuda, cuda:N.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 256,
    data_root: Annotated[Path | None, typer.Option(help="Prepared-data folder (env: DMLBENCH_DATA_ROOT).")] = None,
) -> None:
    """Build a faiss index of a gallery, saved with its run, model fingerprint, paths and labels.

    Either RUN_DIR --dataset NAME [--split S] (embedded here) or --embeddings FILE. The flat index is exact:
    its neighbours are those `dmlbench evaluate` uses.
    """
    setup_logging()
    from dmlbench.inference.embed import embed_split, load_run_model, read_embeddings
    from dmlbench.inference.index import (
        IndexParams,
        build_index,
        check_index_output,
        check_kind,
        check_params,
        describe,
        save_index,
    )

    if output is None:
        raise UsageError("missing -o INDEX (the index folder to write)", hint="e.g. -o glyphs-test.index")
    if (run_dir is None) == (embeddings is None):
        raise UsageError(
            "give exactly one of RUN_DIR (with --dataset) or --embeddings", hint="see `dmlbench index --help`"
        )
    if run_dir is not None and dataset is None:
        raise UsageError(
            "RUN_DIR needs --dataset NAME (the gallery to embed)", hint="e.g. --dataset glyphs --split test"
        )
    if embeddings is not None and (dataset is not None or split != "test"):
        raise UsageError("--dataset / --split apply to RUN_DIR only", hint="drop them with --embeddings")
    if distance not in ("cosine", "euclidean"):
        raise UsageError(f"unknown --distance {distance!r}", hint="use cosine or euclidean")
    dist: Literal["cosine", "euclidean"] = "cosine" if distance == "cosine" else "euclidean"
    params = IndexParams(nlist, nprobe, m, nbits, ef_search, ef_construction)
    check_params(check_kind(index), params)
    check_index_output(output, force=force)  # before any image is embedded
    if embeddings is not None:
        gallery = read_embeddings(embeddings)
    else:
        assert run_dir is not None and dataset is not None
        model = load_run_model(run_dir, device)
        with ProgressRenderer() as progress:
            gallery = embed_split(
                model, dataset, split, places=resolve_places(data_root), batch_size=batch_size, on_event=progress
            )
    built = build_index(gallery, kind=index, distance=dist, params=params)
    written = save_index(built, output, force=force)
    out.print(printable(f"wrote {written}: {describe(built)}"), markup=False, highlight=False)
