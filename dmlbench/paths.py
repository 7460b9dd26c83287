"""Default locations. The CLI passes explicit paths (from flags or DMLBENCH_* variables)."""

from __future__ import annotations

from pathlib import Path


def default_data_root() -> Path:
    """Per-user cache folder for prepared datasets: ~/.cache/dmlbench/data."""
    return Path.home() / ".cache" / "dmlbench" / "data"


def default_runs_root() -> Path:
    """Runs live under ./runs of the working directory, as in the run-directory contract."""
    return Path("runs")
