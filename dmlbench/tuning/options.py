"""What `dmlbench tune` is asked to do (`TuneOptions`) and what it reports back (`TuneResult`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from dmlbench.config import MAX_EPOCHS, MAX_SEED, MAX_SEED_COUNT
from dmlbench.launch.local import MAX_WORKERS
from dmlbench.options import Options
from dmlbench.paths import Places

# A study's budget: trials are folders and trainings, so their count stays within what a runs root holds.
MAX_TRIALS = 100_000
MAX_FOLDS = 1_000


class TuneOptions(Options):
    """One study: the loss and dataset, the budget, where trials and the Optuna storage live.

    Picklable (spawned workers and SLURM tasks receive it). `storage=None` means the journal file
    `places.runs_root/studies.journal`; `study=None` means `<dataset>-<loss>`.
    """

    loss: str
    dataset: str
    trials: int = Field(gt=0, le=MAX_TRIALS)
    folds: int = Field(4, ge=1, le=MAX_FOLDS)
    metric: str = "map@r"
    epochs: int | None = Field(None, gt=0, le=MAX_EPOCHS)
    overrides: tuple[str, ...] = ()
    config_file: Path | None = None
    study: str | None = None
    storage: str | None = None
    final_seeds: int = Field(0, ge=0, le=MAX_SEED_COUNT)
    timeout: float | None = Field(None, gt=0)
    places: Places = Field(default_factory=Places)
    device: str = "auto"
    space_file: Path | None = None
    seed: int = Field(0, ge=0, le=MAX_SEED)
    workers: int = Field(1, ge=1, le=MAX_WORKERS)
    gpus: str | None = None
    quiet: bool = False
    prune: bool = True
    # Random trials before TPE models the space, and trials before the median pruner acts; None: see plan.py.
    startup_trials: int | None = Field(None, ge=0, le=MAX_TRIALS)
    # Share of the training classes held out with --folds 1 (when the config holds out none itself).
    val_classes: float = Field(0.25, gt=0.0, lt=1.0)

    @field_validator("storage")
    @classmethod
    def _empty_storage_is_default(cls, value: str | None) -> str | None:
        # `--storage ''` (an unset shell variable) means what leaving it out means: the runs root's journal.
        return value if value is not None and value.strip() else None


@dataclass
class FinalRun:
    """One final retraining of the best parameters (or the fold ensemble) and its test metrics."""

    name: str
    run_dir: str
    seed: int | None
    metrics: dict[str, float]
    reused: bool = False


@dataclass
class TuneResult:
    """The state of a study after `tune()`: counts, the best trial, and the final runs."""

    study: str
    study_dir: str
    storage: str
    loss: str
    dataset: str
    metric: str
    direction: str
    folds: int
    trials: int
    n_complete: int
    n_pruned: int
    n_failed: int
    n_running: int
    best_trial: int | None
    best_value: float | None
    best_params: dict[str, Any]
    finals: list[FinalRun] = field(default_factory=list)
    ensemble: FinalRun | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
