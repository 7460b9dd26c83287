"""`dmlbench bench`: train and evaluate every dataset x loss x seed, then print the comparison table."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from dmlbench.cli._output import (
    ProgressRenderer,
    err,
    flag_error,
    friendly_errors,
    printable,
    resolve_places,
    setup_logging,
)
from dmlbench.cli.report import split_list
from dmlbench.errors import OptionError
from dmlbench.launch import cli_options as opt
from dmlbench.losses.registry import loss_help


@friendly_errors
@opt.launch_options()
def command(
    datasets: Annotated[
        list[str] | None,
        typer.Option(
            help="Datasets, comma-separated: names, or folders of class folders / OML CSVs (prepared first) "
            "\\[default: `train`'s default dataset]."
        ),
    ] = None,
    losses: Annotated[
        list[str] | None,
        typer.Option(help=f"Losses, comma-separated \\[default: clustering,triplet,lifted,npairs]: {loss_help()}"),
    ] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per combination (0..N-1).", min=1)] = 3,
    config: Annotated[Path | None, typer.Option(help="TOML config applied to every run.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config key: key=value.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs for every run.", min=1)] = None,
    runs_root: Annotated[Path | None, typer.Option(help="Parent of run folders \\[env: DMLBENCH_RUNS_ROOT].")] = None,
    data_root: Annotated[Path | None, typer.Option(help="Prepared-data folder \\[env: DMLBENCH_DATA_ROOT].")] = None,
    catalog: Annotated[
        list[Path] | None, typer.Option(help="Extra dataset catalog (TOML), e.g. from `prepare --catalog`.")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    eval_metrics: Annotated[
        list[str] | None, typer.Option(help="Test metrics to compute, e.g. recall,nmi \\[default: all].")
    ] = None,
    baselines: Annotated[
        bool, typer.Option("--baselines/--no-baselines", help="Untrained and raw-pixel baseline rows.")
    ] = True,
    fmt: Annotated[str, typer.Option("--format", "-f", help="Report format (markdown, csv, latex, html, json).")] = (
        "markdown"
    ),
    tune_trials: Annotated[
        int | None,
        typer.Option(help="Tune every loss with this many trials first (equal budgets), then run final seeds.", min=1),
    ] = None,
    folds: Annotated[int, typer.Option(help="With --tune-trials: class-disjoint validation folds.", min=1)] = 4,
    final_seeds: Annotated[
        int | None, typer.Option(help=r"With --tune-trials: final retrainings per loss \[default: --seeds].", min=1)
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="With --tune-trials: seconds of tuning per loss at most.", min=1)
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    *,
    launch: opt.LaunchChoice,
) -> None:
    """Run the benchmark grid (skipping finished runs, resuming interrupted ones) and print the report.

    --workers N runs N at a time on this machine (one GPU each, or a share of the cores); --launcher slurm
    submits the missing runs as one job array and (unless --no-wait) waits for them.
    """
    from dmlbench.benchmark import DEFAULT_LOSSES, BenchOptions, run_bench

    gpu_list = None if launch.slurm is not None else opt.resolve_gpus(launch.gpus, device, launch.workers)
    if not quiet:
        setup_logging()
    from dmlbench.cli._datasets import dataset_names

    places = resolve_places(data_root, runs_root, catalog)
    dataset_list = split_list(datasets, "--datasets")
    if dataset_list is not None:
        dataset_list = dataset_names(dataset_list, places, quiet=quiet)
    try:
        options = BenchOptions.build(
            places=places,
            datasets=dataset_list,
            losses=split_list(losses, "--losses") or DEFAULT_LOSSES,
            seeds=seeds,
            config_file=config,
            overrides=set_ or (),
            epochs=epochs,
            device=device,
            eval_metrics=split_list(eval_metrics, "--eval-metrics"),
            fmt=fmt,
            baselines=baselines,
            workers=launch.workers,
            gpus=gpu_list,
            parent_visible=os.environ.get("CUDA_VISIBLE_DEVICES"),
            launcher=launch.launcher,
            slurm=launch.slurm,
            tune_trials=tune_trials,
            folds=folds,
            final_seeds=final_seeds,
            timeout=timeout,
        )
    except OptionError as refused:
        raise flag_error(refused, {"config_file": "--config", "overrides": "--set", "fmt": "--format"}) from None
    with ProgressRenderer(quiet=quiet) as progress:
        result = run_bench(options, on_event=progress)
    if result.queued:
        jobs = ", ".join(result.submitted) or "earlier arrays"
        err.print(
            f"bench: {result.queued} SLURM tasks queued or running (job {jobs}); "
            "run the same command again to see them and get the report",
            highlight=False,
        )
        return
    if not quiet:
        actions = ("trained", "resumed", "evaluated", "skipped", "busy", "baseline")
        counts = {a: sum(r.action == a for r in result.runs) for a in actions}
        summary = ", ".join(f"{n} {a}" for a, n in counts.items() if n)
        failed = f", {len(result.failed)} failed" if result.failed else ""
        err.print(f"bench: {len(result.runs)} tasks ({summary}{failed})", highlight=False)
    typer.echo(printable(result.report, newlines=True), nl=False)
