"""`dmlbench tune`: options -> TuneOptions -> dmlbench.tuning.tune(), progress on stderr, summary on stdout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dmlbench.cli._output import (
    ProgressRenderer,
    flag_error,
    friendly_errors,
    out,
    printable,
    resolve_places,
)
from dmlbench.errors import OptionError
from dmlbench.launch import cli_options as opt
from dmlbench.losses.registry import loss_help

S, T, R = "Study", "Trials", "Run"


@friendly_errors
@opt.launch_options(array_parallelism=False)
def command(
    loss: Annotated[str, typer.Option(help=f"The loss to tune: {loss_help()}", rich_help_panel=S)],
    dataset: Annotated[str, typer.Option(help="Prepared dataset (a name, or a folder / OML CSV).", rich_help_panel=S)],
    trials: Annotated[
        int, typer.Option(help="Finished trials (complete + pruned) the study ends with.", rich_help_panel=T)
    ],
    folds: Annotated[
        int, typer.Option(help="Class-disjoint folds of the train classes (1: one held-out share).", rich_help_panel=T)
    ] = 4,
    val_classes: Annotated[
        float,
        typer.Option(
            help="With --folds 1: share of train classes held out (if the config holds none).", rich_help_panel=T
        ),
    ] = 0.25,
    metric: Annotated[str, typer.Option(help="Validation metric the study optimises.", rich_help_panel=T)] = "map@r",
    epochs: Annotated[
        int | None, typer.Option(help="Training epochs of every trial and final run.", rich_help_panel=T)
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Fix a config key (not searched): key=value.", rich_help_panel=T),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="TOML experiment config to start from.", rich_help_panel=T)
    ] = None,
    space: Annotated[
        Path | None, typer.Option(help="Search-space TOML replacing the packaged tables it defines.", rich_help_panel=T)
    ] = None,
    study: Annotated[
        str | None, typer.Option(help="Study name (default: <dataset>-<loss>).", rich_help_panel=S)
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage: journal file (default RUNS_ROOT/studies.journal) or sqlite:// / postgresql:// URL.",
            rich_help_panel=S,
        ),
    ] = None,
    final_seeds: Annotated[
        int, typer.Option(help="Retrain the best parameters with seeds 0..S-1 and test them.", rich_help_panel=S)
    ] = 0,
    timeout: Annotated[
        float | None, typer.Option(help="Stop asking new trials after this many seconds.", rich_help_panel=T)
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sampler, folds and trials.", rich_help_panel=T)] = 0,
    startup_trials: Annotated[
        int | None,
        typer.Option(help="Random trials before TPE and before pruning (default: trials/3, 3..10).", rich_help_panel=T),
    ] = None,
    prune: Annotated[
        bool, typer.Option("--prune/--no-prune", help="Median pruning per epoch.", rich_help_panel=T)
    ] = True,
    runs_root: Annotated[
        Path | None, typer.Option(envvar="DMLBENCH_RUNS_ROOT", help="Parent of run folders.", rich_help_panel=R)
    ] = None,
    data_root: Annotated[
        Path | None, typer.Option(envvar="DMLBENCH_DATA_ROOT", help="Prepared-data folder.", rich_help_panel=R)
    ] = None,
    catalog: Annotated[list[Path] | None, typer.Option(help="Extra dataset catalog TOML.", rich_help_panel=R)] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.", rich_help_panel=R)] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.", rich_help_panel=R)] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the study summary as JSON.", rich_help_panel=R)
    ] = False,
    *,
    launch: opt.LaunchChoice,
) -> None:
    """Tune a loss with Optuna on validation classes (never the test split), then retrain the best on all.

    --workers N shares the study among N processes here, or N SLURM tasks with --launcher slurm.
    """
    from dmlbench.cli._datasets import dataset_name
    from dmlbench.tuning import TuneOptions, tune
    from dmlbench.tuning.core import tune_on_slurm

    try:
        options = TuneOptions.build(
            loss=loss,
            dataset=dataset_name(dataset, resolve_places(data_root)) or dataset,
            trials=trials,
            folds=folds,
            metric=metric,
            epochs=epochs,
            overrides=tuple(set_ or ()),
            config_file=config,
            study=study,
            storage=storage,
            final_seeds=final_seeds,
            timeout=timeout,
            places=resolve_places(data_root, runs_root, catalog),
            device=device,
            space_file=space,
            seed=seed,
            workers=launch.workers,
            gpus=launch.gpus,
            quiet=quiet,
            prune=prune,
            startup_trials=startup_trials,
            val_classes=val_classes,
        )
    except OptionError as refused:
        raise flag_error(refused, {"config_file": "--config", "overrides": "--set", "space_file": "--space"}) from None
    with ProgressRenderer(quiet=quiet) as renderer:
        if launch.slurm is not None:
            outcome = tune_on_slurm(options, launch.slurm, wait=launch.slurm.wait, on_event=renderer)
            if isinstance(outcome, str):
                out.print(
                    printable(
                        f"submitted SLURM array {outcome}; `dmlbench status {options.places.runs_root}` follows it"
                    ),
                    markup=False,
                    highlight=False,
                )
                return
            result = outcome
        else:
            result = tune(options, on_event=renderer)
    if as_json:
        out.print_json(printable(json.dumps(result.to_dict())))
        return
    best = (
        f"best trial {result.best_trial}: {result.metric} {result.best_value:.4f}"
        if result.best_value is not None
        else "no complete trial"
    )
    out.print(
        printable(
            f"{result.study}: {result.n_complete} complete, {result.n_pruned} pruned, {result.n_failed} failed; {best}"
        ),
        markup=False,
        highlight=False,
    )
    for name, value in result.best_params.items():
        text = f"  {name} = {value:.4g}" if isinstance(value, float) else f"  {name} = {value}"
        out.print(printable(text), markup=False, highlight=False)
    for final in [*result.finals, *([result.ensemble] if result.ensemble else [])]:
        shown = "  ".join(f"{k} {final.metrics[k]:.4f}" for k in ("recall@1", "map@r", "nmi") if k in final.metrics)
        out.print(printable(f"{final.name}: {shown}  -> {final.run_dir}"), markup=False, highlight=False)
