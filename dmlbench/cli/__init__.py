"""The `dmlbench` command: one thin module per subcommand, each over one core package.

Nothing here imports torch, faiss or pandas at import time, so `dmlbench --help` is fast.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

import dmlbench
from dmlbench.cli import (
    bench,
    check_loss,
    embed,
    env,
    evaluate,
    export,
    index,
    prepare,
    report,
    search,
    status,
    train,
    tune,
)

EPILOG = """Examples:

  dmlbench prepare glyphs

  dmlbench train --loss clustering

  dmlbench evaluate runs/glyphs-clustering-small_cnn-seed0

  dmlbench report runs --format markdown

  dmlbench bench
"""


class _Commands(TyperGroup):
    """The command group, reading the old spellings of `evaluate`'s modes as the commands that now do them."""

    # ctx is the click Context typer vendors (a private module): typed loosely rather than importing it
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, evaluate.legacy_evaluate(args))


app = typer.Typer(
    name="dmlbench",
    cls=_Commands,
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
app.command("evaluate-embeddings")(evaluate.embeddings_command)
app.command("evaluate-baseline")(evaluate.baseline_command)
app.command("report")(report.command)
app.command("bench")(bench.command)
app.command("tune")(tune.command)
app.command("embed")(embed.command)
app.command("env")(env.command)
app.command("export")(export.command)
app.command("index")(index.command)
app.command("search")(search.command)
app.command("status")(status.command)
app.command("check-loss")(check_loss.command)


def main() -> None:
    """Console-script entry point; the parser's own usage errors (a bad option value, an unknown command)
    get our one `error:` + `hint:` too, not a panel or a traceback."""
    import sys

    from dmlbench.cli._output import print_error
    from dmlbench.errors import UsageError

    # typer raises click's UsageError (vendored inside newer typer); BadParameter is its public subclass.
    parser_error: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
    try:
        code = app(standalone_mode=False)
    except parser_error as error:
        ctx = getattr(error, "ctx", None)
        if type(error).__name__ == "NoArgsIsHelpError" and ctx is not None:  # bare `dmlbench`: the help
            typer.echo(ctx.get_help())
            sys.exit(0)
        command = ctx.command_path if ctx is not None else "dmlbench"
        message = " ".join(error.format_message().split())  # type: ignore[attr-defined]
        print_error(UsageError(message, hint=f"see `{command} --help`"))
        sys.exit(2)
    except typer.Abort:
        print_error(UsageError("interrupted", hint="run the command again to continue"))
        sys.exit(130)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
