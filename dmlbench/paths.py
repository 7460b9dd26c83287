"""Default locations. The CLI passes explicit paths (from flags or DMLBENCH_* variables)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from dmlbench.errors import ConfigError

# What every public function taking a path accepts.
StrPath = str | os.PathLike[str]


def default_data_root() -> Path:
    """Per-user cache folder for prepared datasets: ~/.cache/dmlbench/data."""
    return Path.home() / ".cache" / "dmlbench" / "data"


def default_runs_root() -> Path:
    """Runs live under ./runs of the working directory, as in the run-directory contract."""
    return Path("runs")


# Names that become one path component: no separators, no "..", no leading dot or dash, printable ASCII.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=@-]{0,199}")


def check_name(value: str, what: str) -> str:
    """`value` if it is safe as one folder or file name; else a ConfigError naming `what` (e.g. "run_id")."""
    if not isinstance(value, str) or not _NAME.fullmatch(value) or ".." in value:
        raise ConfigError(
            f"{what} {value!r} is not a plain name (letters, digits and . _ + = @ -, no '/' or '..')",
            hint=f"choose a {what} like 'digits-clustering-seed0'; paths go in --run-dir / --runs-root",
        )
    return value


def child_path(root: Path, name: str, what: str) -> Path:
    """`root / name` for a checked name (a run id, a study name, a dataset name): never outside `root`."""
    return root / check_name(name, what)
