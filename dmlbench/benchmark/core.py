"""`run_bench`: plan, prepare, run every task here / in local workers / as a SLURM array, then report."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dmlbench.benchmark.execute import STOPPING, Action, BenchRun, execute, execute_quietly, is_finished
from dmlbench.benchmark.options import BenchOptions
from dmlbench.benchmark.plan import BenchPlan, Task, make_plan
from dmlbench.errors import DmlbenchError, MissingInputError, UsageError
from dmlbench.events import Event, EventHandler, emit
from dmlbench.launch.slurm import SlurmOptions, check_cluster
from dmlbench.runsroot import SLURM_DIR

if TYPE_CHECKING:
    from dmlbench.paths import Places

log = logging.getLogger(__name__)

PROGRESS_TASK = "bench"
SUBMISSION_RECORD = "bench-submission.json"


@dataclass
class BenchResult:
    """Every task's outcome plus the report of those runs (empty when SLURM tasks were left running)."""

    runs: list[BenchRun] = field(default_factory=list)
    report: str = ""
    submitted: list[str] = field(default_factory=list)  # SLURM array job ids submitted by this call
    queued: int = 0  # tasks left queued or running on SLURM (--no-wait)

    @property
    def failed(self) -> list[BenchRun]:
        """Tasks whose training or evaluation failed (they appear in the report's notes)."""
        return [run for run in self.runs if run.action == "failed"]


def _failed_run(task: Task, error: str) -> BenchRun:
    if task.kind == "baseline":
        return BenchRun(task.dataset, task.baseline, 0, task.places.runs_root / "baselines", "failed", 0.0, error)
    return BenchRun(task.dataset, task.loss, task.seed, task.run_dir, "failed", 0.0, error)


def _describe(run: BenchRun) -> str:
    what = f"failed: {run.error}" if run.action == "failed" else run.action
    if run.action == "busy":
        what = f"in use by {run.error}, skipped"
    return f"{run.run_dir.name}: {what} ({run.seconds:.0f} s)"


def _prepare(plan: BenchPlan, places: Places, on_event: EventHandler | None) -> None:
    """Prepare every dataset with work left, here and once, before any worker (or SLURM task) needs it."""
    from dmlbench.datasets import prepare

    todo = {run.dataset for run in plan.runs if not is_finished(run.run_dir)} | {b.dataset for b in plan.baselines}
    for dataset in plan.datasets:
        if dataset in todo:
            prepare(dataset, places, on_event=on_event)


def _run_here(tasks: Sequence[Task], on_event: EventHandler | None) -> list[BenchRun]:
    runs: list[BenchRun] = []
    for number, task in enumerate(tasks, start=1):
        run = execute(task, on_event, prefix=f"[{number}/{len(tasks)}] ")
        runs.append(run)
        emit(on_event, Event("advance", PROGRESS_TASK, amount=1))
    return runs


def _collect(tasks: Sequence[Task], results: Sequence[BenchRun | BaseException]) -> list[BenchRun]:
    """Worker results as runs; a stopping error (bad config, Ctrl-C) is raised once every worker is done."""
    runs: list[BenchRun] = []
    stop: BaseException | None = None
    for task, result in zip(tasks, results, strict=True):
        if isinstance(result, BenchRun):
            runs.append(result)
        elif isinstance(result, STOPPING):
            stop = stop or result
        else:
            message = result.message if isinstance(result, DmlbenchError) else f"{type(result).__name__}: {result}"
            runs.append(_failed_run(task, message))
    if stop is not None:
        raise stop
    return runs


def _run_in_workers(
    tasks: Sequence[Task],
    *,
    workers: int,
    gpus: Sequence[int] | None,
    parent_visible: str | None,
    on_event: EventHandler | None,
) -> list[BenchRun]:
    from dmlbench.launch.local import run_in_workers

    done = 0

    def on_result(task: Task, result: BenchRun | BaseException) -> None:
        nonlocal done
        done += 1
        text = _describe(result) if isinstance(result, BenchRun) else f"{task.label}: failed: {result}"
        emit(on_event, Event("log", "bench", message=f"[{done}/{len(tasks)}] {text}"))
        emit(on_event, Event("advance", PROGRESS_TASK, amount=1))

    results = run_in_workers(
        execute_quietly, list(tasks), workers=workers, gpus=gpus, on_result=on_result, parent_visible=parent_visible
    )
    return _collect(tasks, results)


def _previous_submissions(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The bench submissions recorded under RUNS_ROOT/slurm/ (each array's record of its tasks)."""
    from dmlbench.utils.io import read_json

    records = []
    if folder.is_dir():
        for path in sorted(folder.glob(f"*/{SUBMISSION_RECORD}")):
            try:
                records.append((path.parent, read_json(path)))
            except (ValueError, OSError):
                log.warning("unreadable SLURM submission record %s: ignored", path)
    return records


def _run_on_slurm(
    tasks: Sequence[Task], *, options: SlurmOptions, runs_root: Path, on_event: EventHandler | None
) -> tuple[list[BenchRun], list[str], int]:
    """Submit what is neither done nor queued as one array; wait for it (and earlier arrays) unless --no-wait."""
    from dmlbench.launch import slurm
    from dmlbench.utils.io import write_json_atomic

    folder = runs_root / SLURM_DIR
    slurm.check_cluster(options)
    # Tasks of earlier submissions still queued or running are not submitted again.
    earlier = _previous_submissions(folder)
    states = slurm.queue_states([record.get("array_id", "") for _, record in earlier if record.get("array_id")])
    queued: dict[str, tuple[Any, str]] = {}  # task label -> (job, squeue state)
    for job_folder, record in earlier:
        for entry in record.get("tasks", []):
            state = states.get(str(entry.get("job_id")))
            if state is not None:
                queued[str(entry.get("label"))] = (slurm.job_for(job_folder, str(entry["job_id"])), state)
    fresh = [task for task in tasks if task.label not in queued]
    running = sum(state in slurm.RUNNING_STATES for _, state in queued.values())
    emit(
        on_event,
        Event(
            "log",
            "bench",
            message=f"slurm: {running} running, {len(queued) - running} pending, {len(fresh)} to submit",
        ),
    )
    submitted: list[str] = []
    jobs: list[Any] = []
    waiting: list[Task] = []
    if fresh:
        submission = slurm.submit_array(execute_quietly, fresh, options, folder)
        submitted.append(submission.job_id)
        write_json_atomic(
            submission.folder / SUBMISSION_RECORD,
            {
                "array_id": submission.job_id,
                "submitted": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "tasks": [
                    {"job_id": str(job.job_id), "label": task.label}
                    for job, task in zip(submission.jobs, fresh, strict=True)
                ],
            },
        )
        emit(
            on_event, Event("log", "bench", message=f"slurm: submitted array {submission.job_id} ({len(fresh)} tasks)")
        )
        jobs += submission.jobs
        waiting += fresh
    by_label = {task.label: task for task in tasks}
    for label, (job, _) in queued.items():
        if label in by_label:
            jobs.append(job)
            waiting.append(by_label[label])
    if not options.wait or not jobs:
        return [], submitted, len(jobs)

    def on_outcome(number: int, result: Any) -> None:
        name = waiting[number].label
        text = "done" if result.ok else f"failed: {result.error}"
        emit(on_event, Event("log", "bench", message=f"slurm task {result.job_id} {name}: {text}"))

    outcomes = slurm.wait_with_progress(
        jobs, on_event=on_event, poll_seconds=options.poll_seconds, on_outcome=on_outcome
    )
    results: list[BenchRun | BaseException] = []
    for result in outcomes:
        if result.ok and isinstance(result.value, BenchRun):
            results.append(result.value)
        else:
            results.append(RuntimeError(result.error or "no result"))
    return _collect(waiting, results), submitted, 0


def _run_tuned(plan: BenchPlan, options: BenchOptions, on_event: EventHandler | None) -> BenchResult:
    """Tune every loss of each dataset with the same budget, run the final seeds, report them with baselines."""
    from dmlbench.reporting import report
    from dmlbench.rundir import RunDir
    from dmlbench.tuning import TuneOptions, tune
    from dmlbench.tuning.plan import make_plan as make_tune_plan

    assert options.tune_trials is not None
    trials = options.tune_trials
    places = options.places
    losses = list(dict.fromkeys(run.loss for run in plan.runs))
    studies = [
        TuneOptions.build(
            loss=loss,
            dataset=dataset,
            trials=trials,
            folds=options.folds,
            epochs=options.epochs,
            overrides=options.overrides,
            config_file=options.config_file,
            final_seeds=options.final_seed_count,
            timeout=options.timeout,
            places=places,
            device=options.device,
            workers=options.workers,
            gpus=",".join(str(g) for g in options.gpus) if options.gpus else None,
            quiet=True,
        )
        for dataset in plan.datasets
        for loss in losses
    ]
    for study in studies:
        make_tune_plan(study)  # every study's inputs checked before the first trial of any
    result = BenchResult()
    total = len(studies) + len(plan.baselines)
    emit(on_event, Event("log", "bench", message=f"bench: {len(studies)} studies of {trials} trials each"))
    _prepare(plan, places, on_event)
    emit(on_event, Event("start", PROGRESS_TASK, total=total, unit="study"))
    try:
        for number, study in enumerate(studies, start=1):
            label = f"[{number}/{len(studies)}] {study.dataset}-{study.loss}"
            emit(on_event, Event("log", "bench", message=f"{label}: tuning ({trials} trials)"))
            started = time.perf_counter()
            tuned = tune(study, on_event=on_event)
            seconds = time.perf_counter() - started
            for final in [*tuned.finals, *([tuned.ensemble] if tuned.ensemble is not None else [])]:
                action: Action = "skipped" if final.reused else "trained"
                result.runs.append(
                    BenchRun(study.dataset, study.loss, final.seed or 0, Path(final.run_dir), action, seconds)
                )
            emit(on_event, Event("advance", PROGRESS_TASK, amount=1))
        result.runs += _run_here(plan.baselines, on_event)
    finally:
        emit(on_event, Event("finish", PROGRESS_TASK))
    written = [run.run_dir for run in result.runs if RunDir(run.run_dir).exists()]
    if not written:
        raise MissingInputError("no tuned run finished", hint="see the errors above; `dmlbench status` lists them")
    result.report = report(list(dict.fromkeys(written)), fmt=options.fmt, on_event=on_event)
    return result


def run_bench(options: BenchOptions, *, on_event: EventHandler | None = None) -> BenchResult:
    """Train and evaluate every dataset x loss x seed of `options`, then render the report of those runs.

    The whole plan is validated before the first run. A task whose training fails is recorded and the
    grid goes on; configuration and device errors stop it. With `options.tune_trials` the report shows
    each loss's final runs of its study beside the baselines (see `BenchOptions`).
    """
    from dmlbench.reporting import report
    from dmlbench.rundir import RunDir

    plan = make_plan(options)
    launcher, workers = options.launcher, options.workers
    if options.tune_trials is not None:
        if launcher == "slurm":
            raise UsageError(
                "bench --tune-trials runs here (local workers); --launcher slurm is not supported with it yet",
                hint="tune each loss with `dmlbench tune --launcher slurm ...`, then `dmlbench report RUNS_ROOT`",
            )
        return _run_tuned(plan, options, on_event)
    slurm = (options.slurm or SlurmOptions()) if launcher == "slurm" else None
    if slurm is not None:
        check_cluster(slurm)  # before preparing anything: a bad partition costs nothing
    tasks = plan.tasks
    result = BenchResult()
    where = {"local": f"{workers} worker{'s' if workers > 1 else ''}", "slurm": "SLURM"}[launcher]
    runs_root = options.places.runs_root
    emit(on_event, Event("log", "bench", message=f"bench: {len(tasks)} tasks under {runs_root} ({where})"))
    _prepare(plan, options.places, on_event)
    emit(on_event, Event("start", PROGRESS_TASK, total=len(tasks), unit="run"))
    try:
        if slurm is not None:
            # Finished runs are skipped here and the baselines (seconds, reused when complete) run here too:
            # only the training that is missing goes to the queue.
            done = [task for task in plan.runs if is_finished(task.run_dir)]
            done_labels = {task.label for task in done}
            result.runs += _run_here([*done, *plan.baselines], on_event)
            todo = [task for task in plan.runs if task.label not in done_labels]
            runs, result.submitted, result.queued = _run_on_slurm(
                todo, options=slurm, runs_root=runs_root, on_event=on_event
            )
            result.runs += runs
            if result.queued:
                return result
        elif workers == 1:
            result.runs = _run_here(tasks, on_event)
        else:
            result.runs = _run_in_workers(
                tasks, workers=workers, gpus=options.gpus, parent_visible=options.parent_visible, on_event=on_event
            )
    finally:
        emit(on_event, Event("finish", PROGRESS_TASK))

    # A run another process holds is being written: it is reported by whoever finishes it.
    written = [run.run_dir for run in result.runs if run.action not in ("failed", "busy")]
    written += [run.run_dir for run in result.failed]
    written = [path for path in dict.fromkeys(written) if RunDir(path).exists()]
    busy = [run for run in result.runs if run.action == "busy"]
    trained = [path for path in written if RunDir(path).read_manifest().kind != "baseline"]
    if not trained and busy:  # baseline rows alone are no comparison
        raise MissingInputError(
            f"every run of the grid is in use by another process ({busy[0].error})",
            hint="wait for it to finish (`dmlbench status` shows it), then run bench again for the report",
        )
    if not written:
        failures = "; ".join(f"{run.run_dir.name}: {run.error}" for run in result.failed)
        raise MissingInputError("every bench run failed before writing its run folder", hint=failures)
    result.report = report(written, fmt=options.fmt, on_event=on_event)
    return result
