"""`tune`, `run_worker`, `run_finals`, `tune_many`: the study from first trial to study.json."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from dmlbench.errors import DmlbenchError
from dmlbench.events import Event, EventHandler, emit
from dmlbench.runsroot import SLURM_DIR
from dmlbench.tuning.finals import ensemble_run, final_run
from dmlbench.tuning.options import FinalRun, TuneOptions, TuneResult
from dmlbench.tuning.plan import Plan, make_plan
from dmlbench.tuning.worker import counts, open_study, work
from dmlbench.utils.redact import redact

logger = logging.getLogger(__name__)
STUDY_JSON = "study.json"


def run_worker(options: TuneOptions) -> None:
    """One process's share of a study: run trials until the study has `options.trials` finished ones.

    Every local worker and every SLURM task calls this on the shared storage; it never runs the finals.
    """
    plan = make_plan(options)
    work(plan, open_study(plan, create=True))


def _worker_entry(options: TuneOptions) -> int:
    """What a spawned worker process runs (module level, so it pickles by name)."""
    run_worker(options)
    return 0


def _final_entry(item: tuple[TuneOptions, int]) -> FinalRun:
    options, seed = item
    plan = make_plan(options)
    return final_run(plan, open_study(plan, create=False), seed)


def _raise_first(results: Sequence[Any]) -> None:
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        first = next((e for e in errors if isinstance(e, DmlbenchError)), errors[0])
        raise first


def _gpus(options: TuneOptions) -> list[int] | None:
    """The GPUs the workers share (checked before anything is written: a missing GPU is an error)."""
    import torch

    from dmlbench.launch.local import parse_gpus

    return parse_gpus(options.gpus, torch.cuda.device_count() if torch.cuda.is_available() else 0)


def _pool(fn: Any, items: list[Any], options: TuneOptions, gpus: list[int] | None) -> list[Any]:
    from dmlbench.launch.local import run_in_workers

    results: list[Any] = run_in_workers(fn, items, workers=options.workers, gpus=gpus)
    _raise_first(results)
    return results


def tune(options: TuneOptions, *, on_event: EventHandler | None = None) -> TuneResult:
    """Run the study's trials (in `options.workers` processes), then its final runs; write study.json."""
    gpus = _gpus(options) if options.workers > 1 else None
    plan = make_plan(options)
    study = open_study(plan, create=True)
    workers = worker_count(plan, study)
    if workers > 1:
        where = f"{plan.study}: {workers} workers on {redact(plan.storage)}"
        emit(on_event, Event("log", "tune", message=where))
        single = options.model_copy(update={"workers": 1, "quiet": True})
        _pool(_worker_entry, [single] * workers, options, gpus)
    else:
        work(plan, study, on_event=on_event)
    return _finish(plan, study, on_event=on_event, gpus=gpus)


def worker_count(plan: Plan, study: Any) -> int:
    """`--workers`, but never more processes than the study has trials left to ask (at least one, to finish)."""
    now = counts(study)
    left = plan.trials - now.finished - now.running
    return max(1, min(plan.options.workers, left))


def run_finals(options: TuneOptions, *, on_event: EventHandler | None = None) -> TuneResult:
    """Only the final runs (and the ensemble) of an existing study: e.g. after SLURM workers searched."""
    gpus = _gpus(options) if options.workers > 1 else None
    plan = make_plan(options)
    return _finish(plan, open_study(plan, create=False), on_event=on_event, gpus=gpus)


def _finish(plan: Plan, study: Any, *, on_event: EventHandler | None, gpus: list[int] | None) -> TuneResult:
    options = plan.options
    finals: list[FinalRun] = []
    ensemble = None
    if options.final_seeds and counts(study).complete:
        seeds = list(range(options.final_seeds))
        if options.workers > 1 and len(seeds) > 1:
            single = options.model_copy(update={"workers": 1, "quiet": True})
            finals = list(_pool(_final_entry, [(single, s) for s in seeds], options, gpus))
        else:
            finals = [final_run(plan, study, s, on_event=on_event) for s in seeds]
        ensemble = ensemble_run(plan, study, on_event=on_event)
    elif options.final_seeds:
        emit(on_event, Event("log", "tune", message=f"{plan.study}: no complete trial, so no final runs"))
    result = study_result(plan, study, finals, ensemble)
    write_study_json(plan, result)
    return result


def study_result(plan: Plan, study: Any, finals: list[FinalRun], ensemble: FinalRun | None) -> TuneResult:
    """The study's counts and best trial as a TuneResult."""
    now = counts(study)
    best = None
    if now.complete:
        best = study.best_trial
    return TuneResult(
        study=plan.study,
        study_dir=str(plan.study_dir),
        storage=redact(plan.storage),
        loss=plan.base.loss.name,
        dataset=plan.base.dataset,
        metric=plan.options.metric,
        direction=plan.direction,
        folds=plan.options.folds,
        trials=plan.trials,
        n_complete=now.complete,
        n_pruned=now.pruned,
        n_failed=now.failed,
        n_running=now.running,
        best_trial=best.number if best is not None else None,
        best_value=float(best.value) if best is not None else None,
        best_params=dict(best.params) if best is not None else {},
        finals=finals,
        ensemble=ensemble,
    )


def write_study_json(plan: Plan, result: TuneResult) -> None:
    from dmlbench.utils.io import write_json_atomic

    plan.study_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(plan.study_dir / STUDY_JSON, {**result.to_dict(), "space": plan.space.describe()})


def tune_many(
    losses: Sequence[str],
    dataset: str,
    trials: int,
    *,
    on_event: EventHandler | None = None,
    **options: Any,
) -> dict[str, TuneResult]:
    """Tune every loss with the same budget (trials, folds, epochs, seed, timeout): the fair comparison.

    `options` are the other TuneOptions fields, shared by all losses; each loss gets its default study name.
    """
    if "study" in options:
        raise ValueError("tune_many names each study <dataset>-<loss>; do not pass study")
    checked = [TuneOptions.build(loss=loss, dataset=dataset, trials=trials, **options) for loss in losses]
    for opts in checked:
        make_plan(opts)  # every loss's inputs checked before the first trial of any
    return {opts.loss: tune(opts, on_event=on_event) for opts in checked}


def tune_on_slurm(
    options: TuneOptions, slurm: Any, *, wait: bool = True, on_event: EventHandler | None = None
) -> TuneResult | str:
    """`options.workers` SLURM tasks share the study's storage (run_worker each), then the finals run here.

    Everything is checked and the study created before anything is submitted; `wait=False` returns the
    array's job id right after submitting. `slurm` is a `dmlbench.launch.slurm.SlurmOptions`.
    """
    from dmlbench.errors import EnvironmentFailure
    from dmlbench.launch.slurm import submit_workers, wait_with_progress
    from dmlbench.tuning.worker import open_study

    plan = make_plan(options)  # prepares a generated dataset, so no task races to prepare it
    study = open_study(plan, create=True)
    single = options.model_copy(update={"workers": 1, "quiet": True})
    tasks = [single] * worker_count(plan, study)
    submission = submit_workers(run_worker, tasks, slurm, options.places.runs_root / SLURM_DIR)
    if not wait:
        return submission.job_id
    outcomes = wait_with_progress(submission.jobs, on_event=on_event, poll_seconds=slurm.poll_seconds)
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise EnvironmentFailure(
            f"{len(failed)} of {len(outcomes)} SLURM tasks of study {plan.study} failed: {failed[0].error}",
            hint=f"their logs are under {submission.folder}; re-run the same command to finish the study",
        )
    return run_finals(options, on_event=on_event)
