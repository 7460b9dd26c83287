"""Module-level work functions the spawned workers import by name (spawn pickles functions by reference)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def describe(item: int) -> tuple[int, int, str | None, int]:
    """Who ran `item`: (item, pid, CUDA_VISIBLE_DEVICES, torch threads)."""
    import torch

    time.sleep(0.05)
    return item, os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES"), torch.get_num_threads()


def square_or_fail(item: int) -> int:
    """item squared; 3 raises, 5 kills its own worker process."""
    if item == 3:
        raise ValueError("three is bad")
    if item == 5:
        os.kill(os.getpid(), signal.SIGKILL)
    return item * item


def append_line(item: tuple[str, int]) -> int:
    """Append the item number to a shared file (what a worker 'did'), once per call."""
    path, number = item
    with Path(path).open("a", encoding="utf-8") as handle:
        handle.write(f"{number} {os.getpid()}\n")
    return number
