"""Default locations. The CLI passes explicit paths (from flags or DMLBENCH_* variables)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Places:
    """Where things live, as one value handed down every layer instead of three parameters.

    `data_root` holds prepared datasets, `runs_root` the run folders and studies, `catalogs` extra catalog TOML
    files read on top of the built-in one (a prepared user dataset records its own spec, so it needs none).
    """

    data_root: Path = field(default_factory=default_data_root)
    runs_root: Path = field(default_factory=default_runs_root)
    catalogs: tuple[Path, ...] = ()

    @classmethod
    def of(
        cls, data_root: StrPath | None = None, runs_root: StrPath | None = None, catalogs: Iterable[StrPath] = ()
    ) -> Places:
        """Places from optional paths (None: the default), for callers holding loose values."""
        return cls(
            data_root=Path(data_root) if data_root is not None else default_data_root(),
            runs_root=Path(runs_root) if runs_root is not None else default_runs_root(),
            catalogs=tuple(Path(c) for c in catalogs),
        )


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
