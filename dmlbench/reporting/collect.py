"""Scan run directories into one tidy table, reading only manifest.json, config.toml and eval metrics.

Nothing here opens a checkpoint or imports torch: reports must work on run folders copied to a laptop.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dmlbench.errors import MissingInputError, RunIncompleteError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

log = logging.getLogger(__name__)

EVAL_SPLIT = "test"
RUN_HINT = "pass a runs folder or run directories; create runs with `dmlbench bench` or `dmlbench train`"

# Columns a report can group by; `dataset` always separates tables because each has its own Recall@K.
GROUP_COLUMNS = ("dataset", "loss", "backbone", "embedding_dim", "batch", "seed")


@dataclass
class RunInfo:
    """Everything a report needs from one run directory."""

    run_id: str
    path: Path
    status: str
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
    excluded: str | None = None

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


@dataclass
class Collection:
    """All runs found, sorted by run id; `included` are complete DML results, the rest carry a reason."""

    runs: list[RunInfo]

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
        columns = ["run_id", *GROUP_COLUMNS, "split", "metric", "value"]
        return pd.DataFrame.from_records(records, columns=columns)


def find_run_dirs(paths: Sequence[Path]) -> list[Path]:
    """Resolve each path (a runs root or a run dir) to the run directories under it, without duplicates."""
    if not paths:
        raise MissingInputError("no runs folder given", hint=RUN_HINT)
    found: dict[Path, Path] = {}
    for path in paths:
        if not path.exists():
            raise MissingInputError(f"{path} does not exist", hint=RUN_HINT)
        if path.is_file():
            if path.name != "manifest.json":
                raise MissingInputError(f"{path} is not a run directory", hint=RUN_HINT)
            path = path.parent
        if (path / "manifest.json").is_file():
            candidates = [path]
        else:
            candidates = sorted(m.parent for m in path.rglob("manifest.json") if not _hidden(m.relative_to(path)))
        if not candidates:
            raise MissingInputError(f"no runs found under {path} (no manifest.json)", hint=RUN_HINT)
        for candidate in candidates:
            found.setdefault(candidate.resolve(), candidate)
    return sorted(found.values(), key=lambda p: (p.name, str(p)))


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def collect(paths: Sequence[Path]) -> Collection:
    """Read every run under `paths`; corrupt files raise, unusable runs are kept with an exclusion reason."""
    runs = [read_run(run_dir) for run_dir in find_run_dirs(paths)]
    runs.sort(key=lambda r: (r.run_id, str(r.path)))
    return Collection(runs)


def read_run(run_dir: Path) -> RunInfo:
    """Read one run directory per the run-directory contract (docs/architecture.md)."""
    manifest = _read_json_file(run_dir / "manifest.json", run_dir)
    run = RunInfo(run_id=str(manifest.get("run_id") or run_dir.name), path=run_dir, status=str(manifest.get("status")))
    raw_dataset = manifest.get("dataset")
    dataset_info: dict[str, Any] = raw_dataset if isinstance(raw_dataset, dict) else {}
    config = _read_config(run_dir / "config.toml", run_dir)
    _fill_from_config(run, config)
    if dataset_info.get("name"):
        run.dataset = str(dataset_info["name"])
    splits = dataset_info.get("splits")
    run.splits = {str(k): dict(v) for k, v in splits.items() if isinstance(v, dict)} if isinstance(splits, dict) else {}

    metrics_path = run_dir / "eval" / EVAL_SPLIT / "metrics.json"
    if metrics_path.is_file():
        payload = _read_json_file(metrics_path, run_dir)
        run.metrics = _parse_metrics(payload, metrics_path, run_dir)
        run.eval_protocol = str(payload["protocol"]) if payload.get("protocol") else None
        if run.embedding_dim is None and isinstance(payload.get("embedding_dim"), int):
            run.embedding_dim = payload["embedding_dim"]

    error = manifest.get("error")
    run.excluded = _exclusion_reason(run, error, dataset_info, config is not None, metrics_path.is_file())
    return run


def _exclusion_reason(
    run: RunInfo, error: object, dataset_info: Mapping[str, Any], has_config: bool, has_metrics: bool
) -> str | None:
    if run.status != "complete":
        return f"status {run.status}" + (f" ({error})" if error else "")
    if not has_config:
        return "no config.toml"
    if not has_metrics:
        return f"no eval/{EVAL_SPLIT}/metrics.json (run `dmlbench evaluate {run.path}`)"
    if not run.metrics:
        return f"eval/{EVAL_SPLIT}/metrics.json holds no metrics"
    overlap = split_overlap(dataset_info.get("train_test_disjoint"), run.splits)
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
        if train_range and other_range and train_range[0] <= other_range[1] and other_range[0] <= train_range[1]:
            return (
                f"train classes {train_range[0]}-{train_range[1]} overlap {name} classes "
                f"{other_range[0]}-{other_range[1]}"
            )
    return None


def _label_range(split: Mapping[str, Any]) -> tuple[int, int] | None:
    low, high = split.get("label_min"), split.get("label_max")
    if isinstance(low, int) and isinstance(high, int):
        return low, high
    return None


def _read_json_file(path: Path, run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunIncompleteError(
            f"{path} is corrupt ({err})",
            hint=f"re-run `dmlbench evaluate {run_dir}` (metrics) or remove the run folder from the report",
        ) from err
    if not isinstance(data, dict):
        raise RunIncompleteError(f"{path} does not hold a JSON object", hint="remove the run folder from the report")
    return data


def _read_config(path: Path, run_dir: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise RunIncompleteError(
            f"{path} is corrupt ({err})", hint=f"restore it or remove {run_dir} from the report"
        ) from err


def _parse_metrics(payload: Mapping[str, Any], path: Path, run_dir: Path) -> dict[str, float]:
    metrics = payload.get("metrics")
    if not isinstance(metrics, dict):
        raise RunIncompleteError(
            f"{path} has no `metrics` object", hint=f"re-run `dmlbench evaluate {run_dir}` to rewrite it"
        )
    parsed: dict[str, float] = {}
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RunIncompleteError(
                f"{path}: metric {name!r} is not a number ({value!r})",
                hint=f"re-run `dmlbench evaluate {run_dir}` to rewrite it",
            )
        if math.isfinite(value):
            parsed[str(name)] = float(value)
        else:
            log.warning("%s: metric %s is %s; left out", path, name, value)
    return parsed


def _get(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _fill_from_config(run: RunInfo, config: Mapping[str, Any] | None) -> None:
    """Grouping columns from the resolved TrainConfig (dmlbench.config schema), read as plain TOML."""
    if config is None:
        return
    for attr, key in (("dataset", "dataset"), ("loss", "loss.name"), ("backbone", "model.backbone")):
        value = _get(config, key)
        if isinstance(value, str):
            setattr(run, attr, value)
    run.embedding_dim = _as_int(_get(config, "model.embedding_dim"))
    run.batch_classes = _as_int(_get(config, "sampler.classes_per_batch"))
    run.batch_per_class = _as_int(_get(config, "sampler.samples_per_class"))
    run.seed = _as_int(_get(config, "seed"))


def _as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def read_history(run_dir: Path) -> pd.DataFrame:
    """Training-step rows of train/history.jsonl (step, epoch, loss, ...); a torn last line is skipped."""
    path = run_dir / "train" / "history.jsonl"
    rows: list[dict[str, Any]] = []
    if path.is_file():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s:%d is not valid JSON; skipped", path, number)
                continue
            if isinstance(row, dict) and isinstance(row.get("loss"), int | float) and "step" in row:
                rows.append(row)
    return pd.DataFrame.from_records(rows, columns=["step", "epoch", "loss"]) if rows else pd.DataFrame()
