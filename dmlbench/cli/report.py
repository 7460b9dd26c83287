"""`dmlbench report`: comparison tables (and plots) from run folders, on stdout or into a file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dmlbench.cli._output import (
    ProgressRenderer,
    err,
    friendly_errors,
    printable,
    resolve_data_root,
    resolve_runs_root,
    setup_logging,
)


def split_list(values: list[str] | None, flag: str = "the list") -> list[str] | None:
    """Accept both `--metrics nmi,recall@1` and repeated `--metrics nmi --metrics recall@1`.

    None when the option was left out; an option given with nothing in it (`--losses ""`, an unset shell
    variable) is an error, never silently the default.
    """
    if values is None:
        return None
    items = [item.strip() for value in values for item in value.split(",") if item.strip()]
    if not items:
        from dmlbench.errors import UsageError

        raise UsageError(f"{flag} is empty", hint=f"name at least one, or leave {flag} out for the default")
    return items


@friendly_errors
def command(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Runs roots or run directories \\[default: the runs root].")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="markdown, csv, latex, html or json.")] = "markdown",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    group_by: Annotated[
        list[str] | None,
        typer.Option(
            "--group-by", help="Row grouping within each dataset \\[default: loss,backbone,embedding_dim,batch]."
        ),
    ] = None,
    metrics: Annotated[
        list[str] | None, typer.Option("--metrics", help="Metric columns, e.g. nmi,recall@1 \\[default: all].")
    ] = None,
    plots: Annotated[Path | None, typer.Option("--plots", help="Also write PNG and SVG plots to this folder.")] = None,
    runs_root: Annotated[
        Path | None, typer.Option(help="Runs folder \\[env: DMLBENCH_RUNS_ROOT; default ./runs].")
    ] = None,
    studies: Annotated[
        bool,
        typer.Option(
            "--studies",
            help="Add the tuning studies (RUNS/studies.journal): summary, optimisation history, parameter importances.",
        ),
    ] = False,
    intervals: Annotated[
        bool,
        typer.Option("--intervals", help="Show 95% confidence intervals in the table (always in csv and json)."),
    ] = False,
    data_root: Annotated[
        Path | None,
        typer.Option(help="Prepared-data folder, for the retrieval grids' images (env: DMLBENCH_DATA_ROOT)."),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(help="Optuna storage of the studies: a journal file or URL (sqlite:///..., postgresql://...)."),
    ] = None,
) -> None:
    """Turn run folders into a comparison table: every loss per dataset, mean ± std over seeds (95% CI with
    --intervals), baselines, tuned rows, paper rows; html and --plots add retrieval grids."""
    from dmlbench.reporting import report
    from dmlbench.utils.io import write_text_atomic

    setup_logging()
    storage = storage if storage is None or storage.strip() else None  # `--storage ''`: as if left out
    inputs = list(paths) if paths else [resolve_runs_root(runs_root)]
    with ProgressRenderer() as progress:
        text = report(
            inputs,
            fmt=fmt,
            group_by=split_list(group_by, "--group-by"),
            metrics=split_list(metrics, "--metrics"),
            plots_dir=plots,
            on_event=progress,
            studies=studies,
            storage=storage,
            intervals=intervals,
            data_root=resolve_data_root(data_root),
        )
    if output is None:
        typer.echo(printable(text, newlines=True), nl=False)
    else:
        write_text_atomic(output, text)
        err.print(f"wrote {printable(output)}", markup=False, highlight=False)
