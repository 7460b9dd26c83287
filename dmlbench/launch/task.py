"""The callable every SLURM task runs (its own module: importing submitit stays off `dmlbench --help`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from submitit.helpers import Checkpointable


class SlurmTask(Checkpointable):  # type: ignore[misc]
    """Picklable wrapper of `fn`; on preemption or time-out submitit requeues the very same call.

    The work itself resumes from its checkpoint (a run from `train/last.pt`, a study from its storage),
    so resubmitting the original arguments (Checkpointable's default) is all the state there is.
    """

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn

    def __call__(self, item: Any) -> Any:
        return self.fn(item)
