"""The `dmlbench` command: one thin module per subcommand, each over one core package.

Nothing here imports torch, faiss or pandas at import time, so `dmlbench --help` is fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

import dmlbench
from dmlbench.cli import bench, env, evaluate, prepare, report, status, train, tune

EPILOG = """Examples:

  dmlbench prepare digits

  dmlbench train --loss clustering

  dmlbench evaluate runs/digits-clustering-small_cnn-seed0

  dmlbench report runs --format markdown

  dmlbench bench
"""

app = typer.Typer(
    name="dmlbench",
    help="Deep-metric-learning benchmarks: prepare datasets, train with the facility-location clustering "
    "loss and its baselines, evaluate NMI and Recall@K, and render comparison tables.",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"dmlbench {dmlbench.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Deep-metric-learning benchmarks."""


app.command("prepare")(prepare.command)
app.command("train")(train.command)
app.command("evaluate")(evaluate.command)
app.command("report")(report.command)
app.command("bench")(bench.command)
app.command("tune")(tune.command)
app.command("env")(env.command)
app.command("status")(status.command)


def main() -> None:
    """Console-script entry point."""
    app()
