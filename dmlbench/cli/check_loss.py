"""`dmlbench check-loss NAME...`: the contract a metric-learning loss must meet, as a table; exit 1 on a failure."""

from __future__ import annotations

from typing import Annotated

import typer

from dmlbench.cli._output import ProgressRenderer, friendly_errors, out, shown
from dmlbench.losses.registry import loss_help


@friendly_errors
def command(
    names: Annotated[list[str], typer.Argument(help=f"Losses to check: {loss_help()}", show_default=False)],
    ddp: Annotated[
        bool, typer.Option("--ddp/--no-ddp", help="Check 2-process gloo gradients (spawns 2 processes).")
    ] = True,
    timing: Annotated[
        bool,
        typer.Option("--timing/--no-timing", help="Time forward+backward at n = 128 and 512, next to the built-ins."),
    ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Check losses against the training contract: finite values and gradients, row-order and class-id
    invariance, edge batches, float64/bf16 agreement, DDP gradients; exit 1 if a check fails."""
    from rich.markup import escape
    from rich.table import Table

    from dmlbench.checks import check_loss, time_losses
    from dmlbench.losses import LOSSES

    chosen = list(dict.fromkeys(names))
    with ProgressRenderer(quiet=quiet) as renderer:
        reports = check_loss(chosen, ddp=ddp, on_event=renderer)
        timed = list(dict.fromkeys([*chosen, *LOSSES.builtin_names()])) if timing else []
        timings = time_losses(timed, on_event=renderer) if timed else []
    for report in reports:
        verdict = "[green]pass[/]" if report.passed else "[bold red]FAIL[/]"
        table = Table("check", "result", "detail", title=f"{escape(report.name)}: {verdict}", title_justify="left")
        for check in report.checks:
            table.add_row(check.check, "pass" if check.passed else "[bold red]FAIL[/]", shown(check.detail))
        out.print(table)
    if timings:
        sizes = sorted({n for t in timings for n in t.ms})
        table = Table(
            "loss",
            *(f"n={n} ms" for n in sizes),
            title="forward+backward, 64-d embeddings, 4 per class, median of 5 (same process)",
            title_justify="left",
        )
        for t in timings:
            mark = "*" if t.name in chosen else ""
            table.add_row(shown(t.name + mark), *("failed" if t.ms.get(n) is None else f"{t.ms[n]:.1f}" for n in sizes))
        out.print(table)
    if not all(report.passed for report in reports):
        raise typer.Exit(code=1)
