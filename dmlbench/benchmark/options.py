"""What `dmlbench bench` is asked to do: one validated `BenchOptions`, read by the plan and the runner alike.

A leaf of the benchmark package (the plan and the runner import it, it imports neither), so a new bench
option is a field here, a flag in `cli/bench.py` and the code that reads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from dmlbench.config import MAX_EPOCHS, MAX_SEED, MAX_SEED_COUNT
from dmlbench.errors import UsageError
from dmlbench.launch.local import check_workers
from dmlbench.launch.slurm import SlurmOptions
from dmlbench.options import Options
from dmlbench.paths import Places
from dmlbench.tuning.options import MAX_FOLDS, MAX_TRIALS

DEFAULT_LOSSES = ("clustering", "triplet", "lifted", "npairs")
DEFAULT_SEEDS = 3

Launcher = Literal["local", "slurm"]


def seed_list(seeds: int | Sequence[int]) -> list[int]:
    """The seeds of every combination: `N` is 0..N-1, a list is those seeds (sorted, each once)."""
    if isinstance(seeds, int):
        if not 1 <= seeds <= MAX_SEED_COUNT:
            raise UsageError(
                f"--seeds must be between 1 and {MAX_SEED_COUNT}, not {seeds}",
                hint="e.g. --seeds 3 runs seeds 0, 1, 2",
            )
        return list(range(seeds))
    chosen = sorted(set(seeds))
    if not chosen or min(chosen) < 0 or max(chosen) > MAX_SEED or len(chosen) > MAX_SEED_COUNT:
        raise UsageError(
            f"seeds must be at most {MAX_SEED_COUNT} integers in 0..{MAX_SEED}",
            hint="e.g. --seeds 3 runs seeds 0, 1, 2",
        )
    return chosen


class BenchOptions(Options):
    """One bench: the grid (datasets x losses x seeds) and its config, where it runs, and the tuned variant.

    `datasets=None` is `dmlbench train`'s default dataset. `config_file` and `overrides` (`--set k=v`) apply
    to every combination; dataset, loss and seed are set per combination (and `epochs` overrides
    schedule.epochs). `eval_metrics=None` computes every test metric; `baselines` adds the untrained and
    raw-pixel rows, computed once per dataset and backbone.

    `workers > 1` runs the tasks in that many local processes, pinned to `gpus` in turn (`parent_visible`:
    the CUDA_VISIBLE_DEVICES of the caller, which the CLI reads); `launcher="slurm"` submits the tasks not
    yet done as one job array asking for `slurm` (None: `SlurmOptions()`).

    `tune_trials=N` is the equal-budget comparison instead: every loss gets a study of N trials on
    validation classes (`folds`, `timeout` per loss), then `final_seeds` (None: as many as `seeds`)
    retrainings of its best parameters.
    """

    places: Places
    datasets: tuple[str, ...] | None = None
    losses: tuple[str, ...] = DEFAULT_LOSSES
    seeds: int | tuple[int, ...] = DEFAULT_SEEDS
    config_file: Path | None = None
    overrides: tuple[str, ...] = ()
    epochs: int | None = Field(None, gt=0, le=MAX_EPOCHS)
    device: str = "auto"
    eval_metrics: tuple[str, ...] | None = None
    fmt: str = "markdown"
    baselines: bool = True
    workers: int = 1
    gpus: tuple[int, ...] | None = None
    parent_visible: str | None = None
    launcher: Launcher = "local"
    slurm: SlurmOptions | None = None
    tune_trials: int | None = Field(None, gt=0, le=MAX_TRIALS)
    folds: int = Field(4, ge=1, le=MAX_FOLDS)
    final_seeds: int | None = Field(None, ge=1, le=MAX_SEED_COUNT)
    timeout: float | None = Field(None, gt=0)

    # The checkers the CLI also uses, so a bad count reads the same from Python and from the command line.
    @field_validator("seeds")
    @classmethod
    def _check_seeds(cls, value: int | tuple[int, ...]) -> int | tuple[int, ...]:
        seed_list(value)
        return value

    @field_validator("workers")
    @classmethod
    def _check_workers(cls, value: int) -> int:
        return check_workers(value)

    @property
    def seed_values(self) -> list[int]:
        """The seeds every dataset x loss combination runs with."""
        return seed_list(self.seeds)

    @property
    def final_seed_count(self) -> int:
        """With `tune_trials`: the final retrainings per loss."""
        return self.final_seeds if self.final_seeds is not None else len(self.seed_values)
