"""How many cores this process may use: the one rule the worker pool and the data loaders share."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def intra_op_threads(threads: int) -> Iterator[None]:
    """Run the block with torch's intra-op thread count set to `threads`, restored afterwards.

    A run's thread count is part of its result: float reductions split over a different number of
    threads round differently, and a loss with discrete choices (the clustering loss's medoids) can
    then take another path.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
