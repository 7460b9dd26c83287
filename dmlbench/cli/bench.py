"""`dmlbench bench`: train and evaluate every dataset x loss x seed, then print the comparison table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dmlbench.cli._output import (
    ProgressRenderer,
    err,
    friendly_errors,
    resolve_data_root,
    resolve_runs_root,
    setup_logging,
)
from dmlbench.cli.report import split_list


@friendly_errors
def command(
    datasets: Annotated[list[str] | None, typer.Option(help="Datasets, comma-separated \\[default: digits].")] = None,
    losses: Annotated[
        list[str] | None, typer.Option(help="Losses \\[default: clustering,triplet,lifted,npairs].")
    ] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per combination (0..N-1).", min=1)] = 3,
    config: Annotated[Path | None, typer.Option(help="TOML config applied to every run.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config key: key=value.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs for every run.", min=1)] = None,
    runs_root: Annotated[Path | None, typer.Option(help="Parent of run folders \\[env: DMLBENCH_RUNS_ROOT].")] = None,
    data_root: Annotated[Path | None, typer.Option(help="Prepared-data folder \\[env: DMLBENCH_DATA_ROOT].")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    eval_metrics: Annotated[
        list[str] | None, typer.Option(help="Test metrics to compute, e.g. recall,nmi \\[default: all].")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="Report format (markdown, csv, latex, html, json).")] = (
        "markdown"
    ),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Run the benchmark grid (skipping finished runs, resuming interrupted ones) and print the report."""
    from dmlbench.benchmark import DEFAULT_DATASETS, DEFAULT_LOSSES, run_bench

    if not quiet:
        setup_logging()
    with ProgressRenderer(quiet=quiet) as progress:
        result = run_bench(
            datasets=split_list(datasets) or DEFAULT_DATASETS,
            losses=split_list(losses) or DEFAULT_LOSSES,
            seeds=seeds,
            runs_root=resolve_runs_root(runs_root),
            data_root=resolve_data_root(data_root),
            config_file=config,
            overrides=set_ or (),
            epochs=epochs,
            device=device,
            eval_metrics=split_list(eval_metrics),
            fmt=fmt,
            on_event=progress,
        )
    if not quiet:
        counts = {a: sum(r.action == a for r in result.runs) for a in ("trained", "resumed", "evaluated", "skipped")}
        summary = ", ".join(f"{n} {a}" for a, n in counts.items() if n)
        failed = f", {len(result.failed)} failed" if result.failed else ""
        err.print(f"bench: {len(result.runs)} runs ({summary}{failed})", highlight=False)
    typer.echo(result.report, nl=False)
