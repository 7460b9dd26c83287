"""`dmlbench status [RUNS_ROOT]`: done / running / failed / pending per grid and study."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dmlbench.cli._output import friendly_errors, out, printable, resolve_runs_root, shown


@friendly_errors
def command(
    runs_root: Annotated[
        Path | None, typer.Argument(help="Runs root to inspect \\[default: DMLBENCH_RUNS_ROOT, else ./runs].")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show, per grid and study, how many runs or trials are done, running, failed and pending."""
    from rich.table import Table

    from dmlbench.benchmark.status import collect_status

    groups = collect_status(resolve_runs_root(runs_root))
    if as_json:
        typer.echo(printable(json.dumps([group.to_dict() for group in groups], indent=2), newlines=True))
        return
    if not groups:
        out.print("no runs found", highlight=False)
        return
    table = Table("kind", "name", "done", "running", "failed", "pending", box=None, pad_edge=False)
    for group in groups:
        done = f"{group.done}/{group.target}" if group.target is not None else str(group.done)
        table.add_row(
            shown(group.kind), shown(group.name), done, str(group.running), str(group.failed), str(group.pending)
        )
    out.print(table)
    for group in groups:
        for run_id, error in group.errors:
            out.print(f"failed {shown(run_id)}: {shown(error)}", highlight=False, soft_wrap=True)
