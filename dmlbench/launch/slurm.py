"""`--launcher slurm`: one submitit job array per call, its tasks requeued and resumed when preempted.

submitit writes the sbatch script, pickles each task and reads its result back; we add the checks
that make a bad flag fail before anything is queued (no `sbatch`, an unknown partition), a record of
what was submitted (so a re-run submits only what is missing), and the task states, which come from
`squeue` and the result files, not from `sacct`: a cluster without accounting (slurmdbd) has no
sacct, and submitit's own state look-ups then fail.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dmlbench.errors import ConfigError, EnvironmentFailure, UnknownNameError, UsageError
from dmlbench.events import Event, EventHandler, emit

log = logging.getLogger(__name__)

# squeue states of a task that still has to (or may again) run.
QUEUED_STATES = frozenset(
    {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED"}
)
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"})
# A task gone from squeue without a result file is declared lost only after this long (squeue lags behind).
_VANISH_GRACE_SECONDS = 15.0


@dataclass(frozen=True)
class SlurmOptions:
    """The `--slurm-*` flags: what every task of one submission asks the scheduler for."""

    partition: str | None = None
    time_minutes: int = 60
    gpus_per_task: int | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    account: str | None = None
    qos: str | None = None
    setup: tuple[str, ...] = ()
    additional: tuple[tuple[str, str], ...] = ()
    array_parallelism: int = 256
    wait: bool = True
    poll_seconds: float = 5.0
    # How often a task preempted or killed at its time limit is requeued before it counts as failed.
    max_requeues: int = 3
    job_name: str = "dmlbench"

    def __post_init__(self) -> None:
        checks = [
            ("--slurm-time", self.time_minutes),
            ("--slurm-array-parallelism", self.array_parallelism),
            ("--slurm-gpus-per-task", self.gpus_per_task),
            ("--slurm-cpus-per-task", self.cpus_per_task),
        ]
        for flag, value in checks:
            if value is not None and value < (0 if flag == "--slurm-gpus-per-task" else 1):
                raise UsageError(f"{flag} must be positive, not {value}", hint=f"e.g. {flag} 1")

    def sbatch_parameters(self) -> dict[str, Any]:
        """The parameters of `submitit.SlurmExecutor.update_parameters`."""
        parameters: dict[str, Any] = {
            "time": self.time_minutes,
            "array_parallelism": self.array_parallelism,
            "job_name": self.job_name,
        }
        optional = {
            "partition": self.partition,
            "gpus_per_task": self.gpus_per_task,
            "cpus_per_task": self.cpus_per_task,
            "mem": self.mem,
            "account": self.account,
            "qos": self.qos,
        }
        parameters.update({key: value for key, value in optional.items() if value is not None})
        if self.setup:
            parameters["setup"] = list(self.setup)
        if self.additional:
            parameters["additional_parameters"] = dict(self.additional)
        return parameters


def parse_additional(values: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """`--slurm-additional KEY=VALUE` pairs (sbatch options without their leading dashes)."""
    pairs: list[tuple[str, str]] = []
    for value in values:
        key, sep, setting = value.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not sep or not key:
            raise UsageError(
                f"--slurm-additional {value!r} is not KEY=VALUE", hint="e.g. --slurm-additional constraint=a100"
            )
        pairs.append((key, setting.strip()))
    return tuple(pairs)


def _run(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise EnvironmentFailure(f"`{command[0]}` failed: {err}", hint="is the SLURM controller reachable?") from None
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip().splitlines()
        raise EnvironmentFailure(
            f"`{' '.join(command)}` failed: {message[-1] if message else f'exit code {done.returncode}'}",
            hint="check that the SLURM controller is up (`sinfo`)",
        )
    return done.stdout


def partitions() -> list[str]:
    """The cluster's partition names (`sinfo`), the default one first."""
    names: list[str] = []
    for line in _run(["sinfo", "-h", "-o", "%P"]).split():
        name = line.strip()
        if name.endswith("*"):
            names.insert(0, name.rstrip("*"))
        elif name:
            names.append(name)
    return list(dict.fromkeys(names))


def check_cluster(options: SlurmOptions) -> None:
    """Fail before submitting anything: no `sbatch` on PATH, or a partition the cluster does not have."""
    from dmlbench.registry import did_you_mean

    missing = [tool for tool in ("sbatch", "squeue", "sinfo") if shutil.which(tool) is None]
    if missing:
        raise EnvironmentFailure(
            f"--launcher slurm needs {missing[0]}, which is not on PATH",
            hint="run on a SLURM login node (or `module load slurm`), or drop --launcher slurm to run here",
        )
    known = partitions()
    if options.partition is not None and options.partition not in known:
        raise UnknownNameError(
            f"unknown SLURM partition {options.partition!r}",
            hint=f"{did_you_mean(options.partition, known)}this cluster has: {', '.join(known) or 'none'}",
        )


@dataclass
class Submission:
    """One submitted job array: its jobs, in the order of the items."""

    job_id: str
    folder: Path
    jobs: list[Any] = field(default_factory=list)


def submit_array(fn: Callable[[Any], Any], items: Sequence[Any], options: SlurmOptions, folder: Path) -> Submission:
    """Submit one job array, a task per item, logs under `folder/<array job id>/`; checks the cluster first."""
    import submitit

    from dmlbench.launch.task import SlurmTask

    if not items:
        raise UsageError("nothing to submit", hint="every item is already done or queued")
    check_cluster(options)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EnvironmentFailure(f"cannot write {folder}: {err.strerror}", hint="pick a writable --runs-root") from None
    executor = submitit.SlurmExecutor(folder=folder / "%A", max_num_timeout=options.max_requeues)
    try:
        executor.update_parameters(**options.sbatch_parameters())
    except ValueError as err:
        raise ConfigError(f"bad --slurm-additional: {err}", hint="pass sbatch options as KEY=VALUE") from None
    try:
        jobs = executor.map_array(SlurmTask(fn), list(items))
    except subprocess.CalledProcessError as err:
        output = (err.stderr or err.output or b"").decode(errors="replace").strip().splitlines()
        raise EnvironmentFailure(
            f"sbatch refused the job array: {output[-1] if output else err}",
            hint="check the --slurm-* options against `sinfo` and your account's limits",
        ) from None
    except Exception as err:
        if type(err).__module__.startswith("submitit"):
            raise EnvironmentFailure(f"sbatch failed: {err}", hint="check the --slurm-* options") from None
        raise
    array_id = str(jobs[0].job_id).split("_", 1)[0]
    log.info("submitted job array %s (%d tasks) from %s", array_id, len(jobs), folder)
    return Submission(array_id, folder / array_id, list(jobs))


def submit_workers(fn: Callable[[Any], Any], items: Sequence[Any], options: SlurmOptions, folder: Path) -> Submission:
    """`tune --launcher slurm --workers N`: N tasks each running `fn(item)` (e.g. `run_worker(options)`)."""
    return submit_array(fn, items, options, folder)


def job_for(folder: Path, job_id: str) -> Any:
    """A submitit job handle for a task submitted earlier (a re-run reads states and results through it)."""
    import submitit

    return submitit.SlurmJob(folder=folder, job_id=job_id)


def queue_states(array_ids: Sequence[str]) -> dict[str, str]:
    """squeue's state of every task still queued or running in these arrays: {"<array>_<index>": state}."""
    if not array_ids:
        return {}
    out = _run(["squeue", "-h", "-r", "-j", ",".join(array_ids), "-o", "%i %T"])
    states: dict[str, str] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states


@dataclass(frozen=True)
class TaskOutcome:
    """A finished task: its result, or the last line of its error."""

    job_id: str
    ok: bool
    value: Any = None
    error: str | None = None


def outcome(job: Any) -> TaskOutcome | None:
    """The task's outcome from its result file, or None while it has none."""
    from submitit.core.utils import pickle_load

    path = Path(job.paths.result_pickle)
    if not path.is_file():
        return None
    try:
        kind, value = pickle_load(path)
    except Exception:  # noqa: BLE001 - a torn or foreign pickle: the task is not done yet
        return None
    if kind == "success":
        return TaskOutcome(str(job.job_id), True, value)
    lines = [line for line in str(value).strip().splitlines() if line.strip()]
    return TaskOutcome(str(job.job_id), False, error=lines[-1].strip() if lines else "failed")


def wait_with_progress(
    jobs: Sequence[Any],
    *,
    on_event: EventHandler | None = None,
    task: str = "slurm tasks",
    poll_seconds: float = 5.0,
    on_outcome: Callable[[int, TaskOutcome], None] | None = None,
) -> list[TaskOutcome]:
    """Wait until every task has a result (or has left the queue without one); one progress bar of them."""
    outcomes: dict[int, TaskOutcome] = {}
    gone_since: dict[int, float] = {}
    array_ids = sorted({str(job.job_id).split("_", 1)[0] for job in jobs})
    emit(on_event, Event("start", task, total=len(jobs), unit="task"))
    try:
        while len(outcomes) < len(jobs):
            states = queue_states(array_ids)
            running = 0
            for number, job in enumerate(jobs):
                if number in outcomes:
                    continue
                result = outcome(job)
                state = states.get(str(job.job_id))
                if result is None and state is None:
                    # Not in the queue and no result: finished a moment ago, or lost (cancelled, node failure).
                    first = gone_since.setdefault(number, time.monotonic())
                    if time.monotonic() - first < _VANISH_GRACE_SECONDS:
                        continue
                    result = TaskOutcome(str(job.job_id), False, error="left the queue without a result")
                if result is None:
                    gone_since.pop(number, None)
                    running += state in RUNNING_STATES
                    continue
                outcomes[number] = result
                emit(on_event, Event("advance", task, amount=1, fields={"running": running}))
                if on_outcome is not None:
                    on_outcome(number, result)
            if len(outcomes) < len(jobs):
                time.sleep(poll_seconds)
    finally:
        emit(on_event, Event("finish", task))
    return [outcomes[number] for number in range(len(jobs))]
