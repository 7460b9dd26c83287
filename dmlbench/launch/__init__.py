"""Running many runs or trials at once: a local process pool (`local`) and SLURM job arrays (`slurm`).

Neither schedules anything itself: `local` hands items to spawned worker processes, `slurm` to submitit.
Every item is claimed by the code it runs (`RunDir.claim`, Optuna's storage), so two workers never do one
item twice and a killed worker loses only what it was doing.
"""
