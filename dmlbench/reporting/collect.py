"""Scan run directories into one tidy table, through the run-directory owner (`dmlbench.rundir`) only.

Nothing here opens a checkpoint or imports torch: reports must work on run folders copied to a laptop.
A run folder is untrusted input: its names reach the report as text (escaped by each renderer) and
become file names only through `dmlbench.paths.check_name`.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dmlbench.errors import DmlbenchError, MissingInputError, RunIncompleteError
from dmlbench.rundir import CONFIG, MANIFEST, Manifest, RunDir, find_runs
from dmlbench.utils.dotted import flatten

log = logging.getLogger(__name__)

EVAL_SPLIT = "test"
RUN_HINT = "pass a runs folder or run directories; create runs with `dmlbench bench` or `dmlbench train`"

# Columns a report can group by; `dataset` always separates tables because each has its own Recall@K.
GROUP_COLUMNS = ("dataset", "loss", "backbone", "embedding_dim", "batch", "seed")
# Config keys that differ between the seeds of one experiment by construction: never a reason to split.
SEED_KEYS = frozenset({"seed", "run_id"})
# Config keys each grouping column stands for: shown in the column, so not repeated in the `config` cell.
COLUMN_KEYS = {
    "dataset": ("dataset",),
    "loss": ("loss.name",),
    "backbone": ("model.backbone",),
    "embedding_dim": ("model.embedding_dim",),
    "batch": ("sampler.classes_per_batch", "sampler.samples_per_class"),
    "seed": ("seed",),
}


@dataclass
class RunInfo:
    """Everything a report needs from one run directory."""

    run_id: str
    run_dir: RunDir
    status: str
    kind: str = "trained"
    baseline: str | None = None
    study: str | None = None
    tuned_params: dict[str, Any] | None = None
    tuning_trials: int | None = None
    dataset: str = "?"
    loss: str = "?"
    backbone: str = "?"
    embedding_dim: int | None = None
    batch_classes: int | None = None
    batch_per_class: int | None = None
    seed: int | None = None
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)
    eval_protocol: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    # What the evaluation approximated (metrics.json `approximation`; empty: every metric exact)
    approximation: dict[str, Any] = field(default_factory=dict)
    # The resolved config, flattened to dotted keys, without the keys seeds differ in (SEED_KEYS).
    config: dict[str, Any] = field(default_factory=dict)
    excluded: str | None = None

    @property
    def path(self) -> Path:
        return self.run_dir.root

    @property
    def batch(self) -> str:
        """Batch composition as "PxK" (classes x images per class)."""
        if self.batch_classes is None or self.batch_per_class is None:
            return "?"
        return f"{self.batch_classes}x{self.batch_per_class}"

    def key(self, column: str) -> str:
        """The value of a grouping column as text."""
        if column == "batch":
            return self.batch
        value = getattr(self, column)
        return "?" if value is None else str(value)

    def signature(self) -> tuple[tuple[str, str], ...]:
        """What must agree for two runs to be seeds of one experiment: the config but seed and names."""
        return tuple(sorted((key, repr(value)) for key, value in self.config.items()))


@dataclass
class Collection:
    """All runs found, sorted by run id; `included` are complete DML results, the rest carry a reason."""

    runs: list[RunInfo]
    trials: int = 0  # tuning trials found: validation-only runs, never rows

    @property
    def included(self) -> list[RunInfo]:
        """Complete runs with test metrics and a disjoint class split."""
        return [run for run in self.runs if run.excluded is None]

    @property
    def excluded(self) -> list[RunInfo]:
        """Runs left out of the tables, each with `excluded` set to the reason."""
        return [run for run in self.runs if run.excluded is not None]

    def frame(self) -> pd.DataFrame:
        """Tidy table: one row per included run x metric (values are fractions in [0, 1])."""
        records = [
            {
                "run_id": run.run_id,
                "kind": run.kind,
                "dataset": run.dataset,
                "loss": run.loss,
                "backbone": run.backbone,
                "embedding_dim": run.embedding_dim,
                "batch": run.batch,
                "seed": run.seed,
                "split": EVAL_SPLIT,
                "metric": metric,
                "value": value,
            }
            for run in self.included
            for metric, value in sorted(run.metrics.items())
        ]
        columns = ["run_id", "kind", *GROUP_COLUMNS, "split", "metric", "value"]
        return pd.DataFrame.from_records(records, columns=columns)


def find_run_dirs(paths: Sequence[str | os.PathLike[str]]) -> list[RunDir]:
    """Each path (a runs root, a run dir or its manifest) as the run folders under it, each real folder once.

    The same run reached twice (passed twice, through a symlink, as `a/../a`) counts once: runs are keyed
    by their resolved path.
    """
    if not paths:
        raise MissingInputError("no runs folder given", hint=RUN_HINT)
    found: dict[Path, RunDir] = {}
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise MissingInputError(f"{path} does not exist", hint=RUN_HINT)
        if path.is_file():
            if RunDir(path.parent).manifest_path != path:
                raise MissingInputError(f"{path} is not a run directory", hint=RUN_HINT)
            path = path.parent
        try:
            runs = find_runs(path)
        except OSError as err:
            raise MissingInputError(f"cannot read {path}: {err.strerror}", hint=RUN_HINT) from None
        if not runs:
            raise MissingInputError(f"no runs found under {path} (no {MANIFEST})", hint=RUN_HINT)
        for run in runs:
            found.setdefault(run.root.resolve(), run)
    return sorted(found.values(), key=lambda run: (run.root.name, str(run.root)))


def collect(paths: Sequence[str | os.PathLike[str]]) -> Collection:
    """Read every run under `paths`; unusable or damaged runs are kept with an exclusion reason.

    Run folders are copied between machines, so one of them may be damaged (a corrupt config, a metric
    that is not a number, an unknown status): that run is left out with the reason, the others are read.
    """
    runs: list[RunInfo] = []
    trials = 0
    for run_dir in find_run_dirs(paths):
        try:
            info = read_run(run_dir)
        except DmlbenchError as err:
            info = RunInfo(
                run_id=run_dir.run_id, run_dir=run_dir, status="unreadable", excluded=f"damaged: {err.message}"
            )
        if info.kind == "trial":  # validation-only by design: counted, never a row nor a "left out" note
            trials += 1
            continue
        runs.append(info)
    runs.sort(key=lambda r: (r.run_id, str(r.path)))
    return Collection(runs, trials)


def read_run(run_dir: RunDir) -> RunInfo:
    """Read one run directory through its owner (manifest, resolved config, test metrics)."""
    manifest = run_dir.read_manifest()
    run = RunInfo(
        run_id=manifest.run_id or run_dir.run_id,
        run_dir=run_dir,
        status=manifest.status,
        kind=manifest.kind,
        baseline=manifest.baseline,
        study=manifest.study,
        tuned_params=manifest.tuned_params,
        tuning_trials=manifest.tuning_trials,
    )
    if run.kind == "trial":
        return run
    has_config = run_dir.config_path.is_file()
    if has_config:
        _fill_from_config(run, _read_config(run_dir))
    dataset = manifest.dataset
    if dataset is not None and dataset.name:
        run.dataset = dataset.name
    splits = dataset.splits if dataset is not None else None
    run.splits = {str(k): dict(v) for k, v in splits.items() if isinstance(v, dict)} if splits else {}
    if run.kind == "baseline":
        run.loss = manifest.baseline or "baseline"
    for plugin in manifest.plugins:  # a file plugin's row names its version: two versions never pool
        if plugin.role == "loss" and run.loss == plugin.name:
            run.loss = f"{plugin.name}@{plugin.sha256[:8]}"
        elif plugin.role == "backbone" and run.backbone == plugin.name:
            run.backbone = f"{plugin.name}@{plugin.sha256[:8]}"

    record = run_dir.read_metrics(EVAL_SPLIT)
    if record is not None:
        run.metrics = {str(name): float(value) for name, value in record.metrics.items()}
        run.eval_protocol = record.protocol
        run.approximation = dict(record.approximation)
        # raw pixels have the image's dimension, whatever model.embedding_dim the config carries
        raw = run.kind == "baseline" and manifest.baseline == "raw"
        if record.embedding_dim is not None and (run.embedding_dim is None or raw):
            run.embedding_dim = record.embedding_dim
    run.excluded = _exclusion_reason(run, manifest, has_config, record is not None)
    return run


def _read_config(run_dir: RunDir) -> dict[str, Any]:
    from dmlbench.config import config_to_dict

    try:
        config = run_dir.read_config()
    except (UnicodeDecodeError, OSError) as err:
        raise RunIncompleteError(
            f"{run_dir.config_path} is unreadable ({err})", hint=f"restore it or remove {run_dir.root} from the report"
        ) from None
    except DmlbenchError as err:
        raise RunIncompleteError(
            f"{run_dir.config_path} is corrupt ({err.message})",
            hint=f"restore it or remove {run_dir.root} from the report",
        ) from None
    return config_to_dict(config)


def _exclusion_reason(run: RunInfo, manifest: Manifest, has_config: bool, has_metrics: bool) -> str | None:
    if run.status != "complete":
        return f"status {run.status}" + (f" ({manifest.error})" if manifest.error else "")
    if not has_config:
        return f"no {CONFIG}"
    if not has_metrics:
        return f"no {EVAL_SPLIT} metrics (run `dmlbench evaluate {run.path}`)"
    if not run.metrics:
        return f"its {EVAL_SPLIT} metrics are empty"
    disjoint = manifest.dataset.train_test_disjoint if manifest.dataset is not None else None
    overlap = split_overlap(disjoint, run.splits)
    if overlap is not None:
        return f"not a DML result: {overlap}"
    return None


def split_overlap(disjoint_flag: object, splits: Mapping[str, Mapping[str, Any]]) -> str | None:
    """Why train and evaluation classes are not provably disjoint, or None when they are.

    Deep metric learning evaluates on classes never seen in training; a run whose manifest says
    otherwise, or whose split class ranges intersect, measures something else and is refused.
    """
    if disjoint_flag is False:
        return "train and test classes overlap (manifest train_test_disjoint is false)"
    if disjoint_flag is not True:
        return "the manifest does not record train_test_disjoint, so the class split cannot be checked"
    train = splits.get("train")
    if train is None:
        return "the manifest records no train split"
    train_range = _label_range(train)
    for name in sorted(splits):
        if name in ("train", "val"):
            continue
        other_range = _label_range(splits[name])
        # Ranges prove an overlap only when both splits fill their ranges: interleaved class ids (glyphs'
        # alternating split) share a range without sharing a class, which prepare checked on the real sets.
        if not (_fills_range(train, train_range) and _fills_range(splits[name], other_range)):
            continue
        if train_range and other_range and train_range[0] <= other_range[1] and other_range[0] <= train_range[1]:
            return (
                f"train classes {train_range[0]}-{train_range[1]} overlap {name} classes "
                f"{other_range[0]}-{other_range[1]}"
            )
    return None


def _fills_range(split: Mapping[str, Any], label_range: tuple[int, int] | None) -> bool:
    classes = split.get("classes")
    if label_range is None or not isinstance(classes, int):
        return True
    return classes == label_range[1] - label_range[0] + 1


def _label_range(split: Mapping[str, Any]) -> tuple[int, int] | None:
    low, high = split.get("label_min"), split.get("label_max")
    if isinstance(low, int) and isinstance(high, int):
        return low, high
    return None


def _fill_from_config(run: RunInfo, config: Mapping[str, Any]) -> None:
    """Grouping columns and the comparability signature from the resolved TrainConfig."""
    flat = flatten(config)
    for attr, key in (("dataset", "dataset"), ("loss", "loss.name"), ("backbone", "model.backbone")):
        value = flat.get(key)
        if isinstance(value, str):
            setattr(run, attr, value)
    run.embedding_dim = _as_int(flat.get("model.embedding_dim"))
    run.batch_classes = _as_int(flat.get("sampler.classes_per_batch"))
    run.batch_per_class = _as_int(flat.get("sampler.samples_per_class"))
    run.seed = _as_int(flat.get("seed"))
    run.config = {key: value for key, value in flat.items() if key not in SEED_KEYS}


def _as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def read_history(run: RunInfo) -> pd.DataFrame:
    """Training-step rows of the run's history (step, epoch, loss); a torn or non-finite row is skipped."""
    try:
        steps = run.run_dir.read_history().steps
    except DmlbenchError as err:  # a loss curve is optional: the report goes on without this one
        log.warning("%s: %s; no loss curve", run.run_id, err.message)
        return pd.DataFrame()
    rows = [{"step": row.step, "epoch": row.epoch, "loss": row.loss} for row in steps if math.isfinite(row.loss)]
    return pd.DataFrame.from_records(rows, columns=["step", "epoch", "loss"]) if rows else pd.DataFrame()
