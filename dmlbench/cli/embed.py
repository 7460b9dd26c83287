"""`dmlbench embed`: embeddings of images or of a prepared split with a run's model, in one .npz file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dmlbench.cli._output import ProgressRenderer, friendly_errors, out, printable, resolve_places, setup_logging
from dmlbench.errors import UsageError


@friendly_errors
def command(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by `dmlbench train`.")],
    images: Annotated[
        Path | None,
        typer.Option(help="An image, a folder of images (class subfolders become labels) or a CSV with `path`."),
    ] = None,
    dataset: Annotated[str | None, typer.Option(help="A prepared dataset to embed instead of images.")] = None,
    split: Annotated[str, typer.Option(help="Split of --dataset: train, test, query, gallery, ...")] = "test",
    output: Annotated[Path, typer.Option("--output", "-o", help="The .npz file to write.")] = Path("embeddings.npz"),
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N (AMP on CUDA).")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 256,
    data_root: Annotated[Path | None, typer.Option(help="Prepared-data folder (env: DMLBENCH_DATA_ROOT).")] = None,
    catalog: Annotated[
        list[Path] | None, typer.Option("--catalog", help="Extra catalog TOML file with your own datasets.")
    ] = None,
) -> None:
    """Embed images (--images) or a prepared split (--dataset) with RUN_DIR's model and its preprocessing.

    Writes one .npz: embeddings, paths, labels when known and the run's fingerprint; `dmlbench evaluate
    --embeddings FILE` scores it, `dmlbench index --embeddings FILE` indexes it.
    """
    setup_logging()
    if (images is None) == (dataset is None):
        raise UsageError("give exactly one of --images or --dataset", hint="see `dmlbench embed --help`")
    if images is not None and split != "test":
        raise UsageError("--split applies to --dataset only", hint="drop --split, or use --dataset NAME")
    from dmlbench.inference.embed import check_output, embed_images, embed_split, load_run_model, write_embeddings

    check_output(output, ".npz")  # before any image is embedded
    model = load_run_model(run_dir, device)
    places = resolve_places(data_root, catalog=catalog)
    with ProgressRenderer() as progress:
        if images is not None:
            result = embed_images(model, images, places=places, batch_size=batch_size, on_event=progress)
        else:
            assert dataset is not None
            result = embed_split(model, dataset, split, places=places, batch_size=batch_size, on_event=progress)
    written = write_embeddings(output, result)
    rows, dim = result.embeddings.shape
    labelled = "with labels" if result.labels is not None else "without labels"
    out.print(
        printable(f"wrote {written}: {rows} embeddings of dimension {dim}, {labelled}"), markup=False, highlight=False
    )
