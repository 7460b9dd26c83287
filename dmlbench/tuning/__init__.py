"""Core of `dmlbench tune`: equal-budget Optuna search on validation classes, final seeds, fold ensemble.

`tune(options)` runs a whole study (its trials, in `options.workers` processes, then the final runs);
`run_worker(options)` is one process's share of the trials (what each local or SLURM worker calls);
`run_finals(options)` retrains the best parameters; `tune_many` gives several losses the same budget.
"""

from __future__ import annotations

from dmlbench.tuning.core import run_finals, run_worker, study_result, tune, tune_many
from dmlbench.tuning.options import FinalRun, TuneOptions, TuneResult

__all__ = ["FinalRun", "TuneOptions", "TuneResult", "run_finals", "run_worker", "study_result", "tune", "tune_many"]
