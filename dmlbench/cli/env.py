"""`dmlbench env`: versions, devices, faiss build and data root, for bug reports."""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dmlbench.cli._output import friendly_errors, out, resolve_places


@friendly_errors
def command(
    data_root: Annotated[
        Path | None, typer.Option(help="Prepared-data folder (default: $DMLBENCH_DATA_ROOT or ~/.cache/dmlbench/data).")
    ] = None,
) -> None:
    """Print versions, devices, faiss build and data root (paste this into bug reports)."""
    import dmlbench
    from dmlbench.provenance import git_commit, versions

    table = Table(show_header=False, box=None)
    table.add_row("dmlbench", dmlbench.__version__)
    table.add_row("python", f"{platform.python_version()} ({sys.executable})")
    table.add_row("platform", platform.platform())
    table.add_row("git commit", git_commit() or "not a git checkout")
    for dist, version in versions().items():
        if dist not in ("dmlbench", "python"):
            table.add_row(dist, version or "not installed")
    try:
        import torch

        cuda = torch.cuda.is_available()
        devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
        table.add_row("torch cuda build", str(torch.version.cuda))
        table.add_row("cuda devices", ", ".join(devices) or "none")
        table.add_row("cpu threads", str(torch.get_num_threads()))
    except ImportError:
        table.add_row("torch", "cannot import")
    try:
        import faiss

        gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
        table.add_row("faiss", f"{faiss.__version__} (gpus visible to faiss: {gpus})")
    except ImportError:
        table.add_row("faiss", "cannot import (pip install faiss-cpu)")
    places = resolve_places(data_root)
    table.add_row("data root", str(places.data_root))
    table.add_row("runs root", str(places.runs_root))
    out.print(table)
