"""Functions SLURM tasks run in the tests (importable by name from the task's interpreter)."""

from __future__ import annotations

import os
from pathlib import Path


def record(item: tuple[str, int]) -> str:
    """Append `<item> <SLURM_ARRAY_TASK_ID>` to a shared file: proof the task ran, once, under SLURM."""
    path, number = item
    with Path(path).open("a", encoding="utf-8") as handle:
        handle.write(f"{number} {os.environ.get('SLURM_ARRAY_TASK_ID')}\n")
    return f"item {number}"


def fail(item: int) -> int:
    raise ValueError(f"task {item} fails on purpose")
