"""The runs root's layout: what lives under `--runs-root` beside the run folders (whose insides `rundir` owns).

```
<runs_root>/
  <run_id>/                  a run of `train` or `bench` (dmlbench.rundir.RunDir)
  baselines/<run_id>/        `evaluate --baseline` and bench baselines: <dataset>-<baseline>-<backbone>-seed<s>
  tune/<study>/              one tuning study: trial-<n>/, final-seed<s>/, ensemble/
  studies.journal            Optuna's journal storage of every study under this root
  slurm/<array job id>/      submitit's logs and results of `bench` and `tune` on SLURM
```
Every package that writes or finds one of these names imports it from here.
"""

from __future__ import annotations

STUDIES_JOURNAL = "studies.journal"
TUNE_DIR = "tune"
BASELINES_DIR = "baselines"
SLURM_DIR = "slurm"
