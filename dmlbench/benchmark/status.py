"""`dmlbench status`: what is done, running, failed and pending under a runs root, per grid and study.

Read from the run folders themselves (manifests, held locks), each study's `study.json` (its target
trial count and finished/pruned/failed counts) and the SLURM submission records with squeue, when
squeue is on PATH. Nothing is written.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dmlbench.errors import DmlbenchError, MissingInputError
from dmlbench.runsroot import SLURM_DIR

log = logging.getLogger(__name__)

STUDY_JSON = "study.json"


@dataclass
class GroupStatus:
    """One grid (trained runs of a dataset), one study, or the baselines."""

    kind: str  # "grid" | "study" | "baselines"
    name: str
    done: int = 0
    running: int = 0
    failed: int = 0
    pending: int = 0
    target: int | None = None  # a study's trial budget
    errors: list[tuple[str, str]] = field(default_factory=list)  # (run id, last error line)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "done": self.done,
            "running": self.running,
            "failed": self.failed,
            "pending": self.pending,
            "target": self.target,
            "errors": [{"run": run, "error": error} for run, error in self.errors],
        }


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "failed (no error recorded)"


def _state(run: Any) -> tuple[str, str | None]:
    """("done" | "running" | "failed" | "pending", error line) of one run folder."""
    if run.holder() is not None:
        return "running", None
    try:
        manifest = run.read_manifest()
    except DmlbenchError as error:
        return "failed", error.message
    if manifest.status == "failed":
        return "failed", _last_line(manifest.error)
    if manifest.status == "complete":
        if manifest.kind == "trial":
            return "done", None
        try:
            has_test = run.read_metrics("test") is not None
        except DmlbenchError as error:  # damaged (e.g. a metric that is not a number): shown with its reason
            return "failed", error.message
        return ("done", None) if has_test else ("pending", None)  # trained, not yet evaluated
    return "pending", None  # interrupted, or left running by a killed process: resumable


def _study_record(runs_root: Path, study: str) -> dict[str, Any] | None:
    from dmlbench.paths import child_path
    from dmlbench.utils.io import read_json

    try:
        path = child_path(child_path(runs_root, "tune", "folder"), study, "study") / STUDY_JSON
        return read_json(path) if path.is_file() else None
    except (DmlbenchError, ValueError, OSError):
        return None


def _count(value: Any) -> int:
    """A trial count of study.json; anything but a non-negative integer (a damaged record) counts 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _queued_labels(runs_root: Path) -> set[str]:
    """Labels of bench tasks still pending in SLURM's queue (never started: no run folder yet)."""
    from dmlbench.benchmark.core import _previous_submissions
    from dmlbench.launch.slurm import QUEUED_STATES, queue_states

    if shutil.which("squeue") is None:
        return set()
    records = _previous_submissions(runs_root / SLURM_DIR)
    try:
        states = queue_states([str(r.get("array_id")) for _, r in records if r.get("array_id")])
    except DmlbenchError as error:
        log.warning("squeue failed (%s): queued SLURM tasks are not counted", error.message)
        return set()
    return {
        str(entry.get("label"))
        for _, record in records
        for entry in record.get("tasks", [])
        if states.get(str(entry.get("job_id"))) in QUEUED_STATES
    }


def collect_status(runs_root: str | Path) -> list[GroupStatus]:
    """Every grid, study and the baselines found under `runs_root`, grids first, names sorted."""
    from dmlbench.rundir import find_runs

    root = Path(runs_root)
    if not root.is_dir():
        raise MissingInputError(f"{root} is not a folder", hint="pass the --runs-root of your runs")
    groups: dict[tuple[str, str], GroupStatus] = {}
    trials: dict[str, dict[int, list[str]]] = {}  # study -> trial -> fold states
    seen_labels: set[str] = set()
    for run in find_runs(root):
        try:
            manifest = run.read_manifest()
        except DmlbenchError as error:
            group = groups.setdefault(("grid", "(unreadable)"), GroupStatus("grid", "(unreadable)"))
            group.failed += 1
            group.errors.append((run.run_id, error.message))
            continue
        seen_labels.add(run.run_id)
        state, last_error = _state(run)
        if manifest.kind == "baseline":
            key = ("baselines", "baselines")
        elif manifest.study is not None:
            key = ("study", manifest.study)
        else:
            name = manifest.dataset.name if manifest.dataset is not None else "?"
            key = ("grid", name)
        group = groups.setdefault(key, GroupStatus(*key))
        if manifest.kind == "trial" and manifest.trial is not None:
            trials.setdefault(key[1], {}).setdefault(manifest.trial, []).append(state)
        else:
            setattr(group, state, getattr(group, state) + 1)
        if last_error is not None:
            group.errors.append((run.run_id, last_error))
    # A trial is as far as its least finished fold.
    for study, by_trial in trials.items():
        group = groups[("study", study)]
        for states in by_trial.values():
            for state in ("running", "failed", "pending", "done"):
                if state in states:
                    setattr(group, state, getattr(group, state) + 1)
                    break
        record = _study_record(root, study)
        if record is not None and isinstance(record.get("trials"), int):
            group.target = int(record["trials"])
            finished = _count(record.get("n_complete")) + _count(record.get("n_pruned"))
            group.pending = max(0, group.target - max(finished, group.done) - group.running)
    queued = len(_queued_labels(root) - seen_labels)
    if queued:
        groups[("grid", "(queued on SLURM)")] = GroupStatus("grid", "(queued on SLURM)", pending=queued)
    order = {"grid": 0, "study": 1, "baselines": 2}
    return [groups[key] for key in sorted(groups, key=lambda k: (order[k[0]], k[1]))]
