"""Where a result came from: package versions and the git commit, for manifests and `dmlbench env`."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path

import dmlbench

# The distributions that change numbers; faiss ships under several names (faiss-cpu, faiss-gpu-cu12, ...).
TRACKED = (
    "torch",
    "torchvision",
    "timm",
    "pytorch-metric-learning",
    "optuna",
    "numpy",
    "pandas",
    "scikit-learn",
)
FAISS_DISTRIBUTIONS = ("faiss-cpu", "faiss-gpu-cu12", "faiss-gpu-cu11", "faiss-gpu", "faiss")


def distribution_version(name: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def faiss_distribution() -> tuple[str, str] | None:
    """(distribution name, version) of whichever faiss build is installed."""
    for name in FAISS_DISTRIBUTIONS:
        version = distribution_version(name)
        if version is not None:
            return name, version
    return None


def versions() -> dict[str, str | None]:
    """dmlbench, python, the tracked distributions and faiss (as `faiss`, with its distribution name)."""
    found: dict[str, str | None] = {"dmlbench": dmlbench.__version__, "python": platform.python_version()}
    for name in TRACKED:
        found[name] = distribution_version(name)
    faiss = faiss_distribution()
    found["faiss"] = f"{faiss[1]} ({faiss[0]})" if faiss else None
    return found


def git_commit() -> str | None:
    """The commit of the dmlbench checkout this code runs from, or None outside a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(dmlbench.__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (result.stdout.strip() or None) if result.returncode == 0 else None
