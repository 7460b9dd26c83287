"""Core of `dmlbench bench`: prepare -> train -> evaluate every dataset x loss x seed, then report.

Finished runs are skipped (manifest complete and test metrics present), interrupted ones resumed, so
re-running the same command after a crash only does the missing work. The run folders are the same
as `dmlbench train` writes, so `dmlbench report` reads them too. `options` holds what is asked
(`BenchOptions`), `plan` validates the grid, `execute` runs one task anywhere, `core` hands the tasks to
this process, local workers or SLURM.
"""

from __future__ import annotations

from dmlbench.benchmark.core import BenchResult, run_bench
from dmlbench.benchmark.execute import Action, BenchRun
from dmlbench.benchmark.options import DEFAULT_LOSSES, DEFAULT_SEEDS, BenchOptions
from dmlbench.benchmark.plan import BenchPlan, default_dataset, make_plan

__all__ = [
    "DEFAULT_LOSSES",
    "DEFAULT_SEEDS",
    "Action",
    "BenchOptions",
    "BenchPlan",
    "BenchResult",
    "BenchRun",
    "default_dataset",
    "make_plan",
    "run_bench",
]
