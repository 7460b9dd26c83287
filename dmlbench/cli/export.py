"""`dmlbench export`: a run's embedder as ONNX or TorchScript, checked against dmlbench's own embeddings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dmlbench.cli._output import ProgressRenderer, err, friendly_errors, out, resolve_places, setup_logging
from dmlbench.errors import DmlbenchError


@friendly_errors
def command(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by `dmlbench train`.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="onnx or torchscript.")] = "onnx",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: RUN_ID.onnx / RUN_ID.pt).")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check/--no-check", help="Run the parity check (a fresh process without dmlbench).")
    ] = True,
    data_root: Annotated[Path | None, typer.Option(help="Prepared-data folder (env: DMLBENCH_DATA_ROOT).")] = None,
    catalog: Annotated[
        list[Path] | None, typer.Option("--catalog", help="Extra catalog TOML file with your own datasets.")
    ] = None,
) -> None:
    """Export RUN_DIR's embedder (dynamic batch size, preprocessing recorded in the file's metadata).

    The parity check embeds real images of the run's dataset with the exported file in a process that
    never imports dmlbench and compares with dmlbench's embeddings: exit 1 when the largest difference
    exceeds 1e-4.
    """
    setup_logging()
    from dmlbench.inference.embed import check_output, load_run_model
    from dmlbench.inference.export import PARITY_TOLERANCE, SUFFIXES, check_format, export_run

    kind = check_format(fmt)
    model = load_run_model(run_dir, "cpu")  # fp32 on CPU: the reference the check compares against
    target = output if output is not None else Path(f"{model.run.run_id}{SUFFIXES[kind]}")
    check_output(target, SUFFIXES[kind])
    with ProgressRenderer() as progress:
        result = export_run(
            model,
            kind,
            target,
            places=resolve_places(data_root, catalog=catalog),
            check=check,
            on_event=progress,
        )
    meta = result.metadata
    height, width = json.loads(meta["input_size"])
    out.print(
        f"wrote {result.path} ({kind}: input [batch, {meta['channels']}, {height}, {width}] preprocessed, "
        f"output [batch, {meta['embedding_dim']}])",
        markup=False,
        highlight=False,
    )
    parity = result.parity
    if parity is None:
        err.print("parity check skipped (--no-check)", highlight=False)
        return
    out.print(
        f"parity ({parity.runtime}, {parity.rows} real images, batch sizes {parity.batch_sizes}): "
        f"max |diff| {parity.max_abs_diff:.3g}, min cosine {parity.min_cosine:.8f}, tolerance {PARITY_TOLERANCE:g}",
        markup=False,
        highlight=False,
    )
    if not parity.passed:
        # exit 1: the file was written, but it does not compute the run's embeddings
        raise DmlbenchError(
            f"parity check failed: max |diff| {parity.max_abs_diff:.3g} > {PARITY_TOLERANCE:g} ({result.path} kept)",
            hint="the exported graph computes other embeddings; report the backbone, or try the other --format",
        )
