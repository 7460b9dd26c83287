"""Aggregate runs into comparison tables: one per dataset, seeds as mean ± std, paper rows and differences."""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from dmlbench.errors import MissingInputError, UnknownNameError
from dmlbench.registry import did_you_mean
from dmlbench.reporting.collect import GROUP_COLUMNS, Collection, RunInfo
from dmlbench.reporting.paper import PaperResults, PaperRow, load_paper_results

DEFAULT_GROUP_BY = ("loss", "backbone", "embedding_dim", "batch")
# The paper's table order: baselines first, the proposed facility-location loss last.
LOSS_ORDER = ("triplet", "lifted", "npairs", "clustering")
_FIXED_METRIC_ORDER = ("nmi", "f1", "precision@1", "r_precision", "map@r")
METRIC_LABELS = {"nmi": "NMI", "f1": "F1", "precision@1": "P@1", "r_precision": "RP", "map@r": "MAP@R"}

RowKind = Literal["reproduced", "paper", "difference"]


@dataclass(frozen=True)
class Cell:
    """One table value in percent; every metric is higher-is-better."""

    mean: float | None
    std: float | None = None
    count: int = 0
    best: bool = False
    unverified: bool = False


@dataclass(frozen=True)
class Row:
    """A reproduced group (mean over seeds), a published paper row, or their difference."""

    kind: RowKind
    keys: dict[str, str]
    n: int | None
    cells: dict[str, Cell]
    runs: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetTable:
    """The comparison for one dataset and the protocol it was measured under."""

    dataset: str
    group_by: tuple[str, ...]
    metrics: tuple[str, ...]
    protocol: dict[str, str]
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class Report:
    """Every table plus what was left out and why."""

    tables: tuple[DatasetTable, ...]
    excluded: tuple[tuple[str, str], ...]
    partial: tuple[tuple[str, str], ...]
    paper_citation: str | None = None
    paper_verification: str | None = None
    has_unverified: bool = False


def metric_label(metric: str) -> str:
    """Short column label in the paper's style: recall@4 -> R@4, nmi -> NMI."""
    if metric.startswith("recall@"):
        return "R@" + metric.removeprefix("recall@")
    return METRIC_LABELS.get(metric, metric)


def metric_sort_key(metric: str) -> tuple[int, int, str]:
    """NMI first, then Recall@K by K, then the other metrics in a fixed order."""
    if metric == "nmi":
        return (0, 0, metric)
    match = re.fullmatch(r"recall@(\d+)", metric)
    if match:
        return (1, int(match.group(1)), metric)
    if metric in _FIXED_METRIC_ORDER:
        return (2, _FIXED_METRIC_ORDER.index(metric), metric)
    return (3, 0, metric)


def _normalise_metric(name: str) -> str:
    lowered = name.strip().lower()
    if re.fullmatch(r"r@\d+", lowered):
        return "recall" + lowered[1:]
    aliases = {"p@1": "precision@1", "rp": "r_precision", "map_r": "map@r", "mapr": "map@r"}
    return aliases.get(lowered, lowered)


def resolve_metrics(requested: Sequence[str] | None, available: set[str]) -> tuple[str, ...] | None:
    """Validate `--metrics` names against those the runs hold (did-you-mean on a typo)."""
    if not requested:
        return None
    resolved: list[str] = []
    for raw in requested:
        name = _normalise_metric(raw)
        if name not in available:
            known = sorted(available, key=metric_sort_key)
            raise UnknownNameError(
                f"unknown metric {raw!r}", hint=f"{did_you_mean(name, known)}the runs hold: {', '.join(known)}"
            )
        if name not in resolved:
            resolved.append(name)
    return tuple(resolved)


def resolve_group_by(requested: Sequence[str] | None) -> tuple[str, ...]:
    """Validate `--group-by`; `dataset` is implied because every dataset gets its own table."""
    if not requested:
        return DEFAULT_GROUP_BY
    aliases = {"embedding": "embedding_dim", "dim": "embedding_dim", "embedding_size": "embedding_dim"}
    columns: list[str] = []
    for raw in requested:
        name = aliases.get(raw.strip().lower(), raw.strip().lower())
        if name not in GROUP_COLUMNS:
            raise UnknownNameError(
                f"cannot group by {raw!r}",
                hint=f"{did_you_mean(name, list(GROUP_COLUMNS))}columns: {', '.join(GROUP_COLUMNS)}",
            )
        if name != "dataset" and name not in columns:
            columns.append(name)
    return tuple(sorted(columns, key=GROUP_COLUMNS.index))


def loss_sort_key(loss: str) -> tuple[int, str]:
    """The paper's order (triplet, lifted, npairs, clustering), then other losses alphabetically."""
    return (LOSS_ORDER.index(loss), "") if loss in LOSS_ORDER else (len(LOSS_ORDER), loss)


def _natural(value: str) -> tuple[tuple[int, str], ...]:
    return tuple((int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"(\d+)", value) if part)


def _group_sort_key(keys: dict[str, str], group_by: Sequence[str]) -> tuple[object, ...]:
    return tuple(loss_sort_key(keys[c]) if c == "loss" else _natural(keys[c]) for c in group_by)


def _aggregate(values: list[float]) -> Cell:
    percents = [v * 100.0 for v in values]
    std = statistics.stdev(percents) if len(percents) > 1 else None
    return Cell(mean=statistics.fmean(percents), std=std, count=len(percents))


def _format_int(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def describe_splits(splits: dict[str, dict[str, object]]) -> str:
    """'train: classes 0-99 (100 classes, 5,864 images); test: ...' from manifest dataset.splits."""
    parts = []
    for name in sorted(splits, key=lambda s: (s != "train", s)):
        info = splits[name]
        low, high = info.get("label_min"), info.get("label_max")
        span = f"classes {low}-{high}" if low is not None and high is not None else "classes ?"
        parts.append(
            f"{name}: {span} ({_format_int(info.get('classes'))} classes, {_format_int(info.get('images'))} images)"
        )
    return "; ".join(parts) or "not recorded"


def _distinct(values: list[str]) -> str:
    return ", ".join(sorted(set(values), key=_natural)) or "?"


def _protocol(runs: list[RunInfo]) -> dict[str, str]:
    batches = sorted({(r.batch_classes, r.batch_per_class) for r in runs}, key=str)
    batch_text = ", ".join(
        f"{p}x{k} ({p * k} images: {p} classes x {k} per class)" if p and k else "?" for p, k in batches
    )
    return {
        "split": " | ".join(sorted({describe_splits(r.splits) for r in runs})),
        "backbone": _distinct([r.backbone for r in runs]),
        "embedding_dim": _distinct([r.key("embedding_dim") for r in runs]),
        "batch": batch_text,
        "retrieval": _distinct([r.eval_protocol or "?" for r in runs]),
    }


def build_report(
    collection: Collection,
    *,
    group_by: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    paper: PaperResults | None = None,
) -> Report:
    """Group the included runs per dataset x `group_by`, aggregate seeds, add paper rows and differences."""
    columns = resolve_group_by(group_by)
    included = collection.included
    excluded = tuple((run.run_id, run.excluded or "") for run in collection.excluded)
    if not included:
        reasons = "; ".join(f"{rid}: {why}" for rid, why in excluded)
        raise MissingInputError(
            "no complete DML runs to report", hint=f"every run was left out ({reasons}); finish or re-run them"
        )
    available = {m for run in included for m in run.metrics}
    chosen = resolve_metrics(metrics, available)
    paper = paper if paper is not None else load_paper_results()

    tables: list[DatasetTable] = []
    partial: list[tuple[str, str]] = []
    used_paper = False
    has_unverified = False
    for dataset in sorted({run.dataset for run in included}):
        runs = [run for run in included if run.dataset == dataset]
        present = {m for run in runs for m in run.metrics}
        table_metrics = (
            tuple(m for m in chosen if m in present) if chosen else tuple(sorted(present, key=metric_sort_key))
        )
        groups: dict[tuple[str, ...], list[RunInfo]] = {}
        for run in runs:
            groups.setdefault(tuple(run.key(c) for c in columns), []).append(run)
        reproduced: list[Row] = []
        for key, members in groups.items():
            cells: dict[str, Cell] = {}
            for metric in table_metrics:
                values = [run.metrics[metric] for run in members if metric in run.metrics]
                partial.extend((run.run_id, metric) for run in members if metric not in run.metrics)
                cells[metric] = _aggregate(values) if values else Cell(mean=None)
            run_ids = tuple(sorted(run.run_id for run in members))
            reproduced.append(Row("reproduced", dict(zip(columns, key, strict=True)), len(members), cells, run_ids))
        reproduced.sort(key=lambda row: _group_sort_key(row.keys, columns))
        reproduced = _mark_best(reproduced, table_metrics)

        rows: list[Row] = []
        shown_paper: set[str] = set()
        for row in reproduced:
            published = paper.row(dataset, row.keys["loss"]) if "loss" in columns else None
            if published is None or set(published.metrics).isdisjoint(table_metrics):
                rows.append(row)
                continue
            used_paper = True
            if published.loss not in shown_paper:  # one paper row above all groups of that loss
                shown_paper.add(published.loss)
                paper_row = _paper_row(paper, published, columns, table_metrics)
                has_unverified |= any(c.unverified and c.mean is not None for c in paper_row.cells.values())
                rows.append(paper_row)
            rows.append(row)
            rows.append(_difference_row(row, published, table_metrics))
        tables.append(DatasetTable(dataset, columns, table_metrics, _protocol(runs), tuple(rows)))

    return Report(
        tables=tuple(tables),
        excluded=excluded,
        partial=tuple(sorted(set(partial))),
        paper_citation=paper.citation if used_paper else None,
        paper_verification=paper.verification if used_paper else None,
        has_unverified=has_unverified,
    )


def _paper_row(paper: PaperResults, published: PaperRow, columns: Sequence[str], metrics: Sequence[str]) -> Row:
    keys = {c: "-" for c in columns}
    keys["loss"] = published.loss
    if "backbone" in columns:
        keys["backbone"] = paper.backbone
    if "embedding_dim" in columns:
        keys["embedding_dim"] = str(paper.embedding_dim)
    cells = {m: Cell(mean=published.metrics.get(m), unverified=m in published.unverified) for m in metrics}
    return Row("paper", keys, None, cells)


def _difference_row(row: Row, published: PaperRow, metrics: Sequence[str]) -> Row:
    """Reproduced minus published, in percentage points; unverified published values stay marked."""
    cells = {}
    for metric in metrics:
        ours, theirs = row.cells[metric].mean, published.metrics.get(metric)
        diff = ours - theirs if ours is not None and theirs is not None else None
        cells[metric] = Cell(mean=diff, unverified=diff is not None and metric in published.unverified)
    return Row("difference", dict(row.keys), None, cells, row.runs)


def _mark_best(rows: list[Row], metrics: Sequence[str]) -> list[Row]:
    """Bold the highest mean per column; only meaningful when there is something to compare."""
    if len(rows) < 2:
        return rows
    best: dict[str, float] = {}
    for metric in metrics:
        means = [row.cells[metric].mean for row in rows if row.cells[metric].mean is not None]
        if means:
            best[metric] = max(m for m in means if m is not None)
    marked = []
    for row in rows:
        cells = {
            m: Cell(c.mean, c.std, c.count, best=c.mean is not None and math.isclose(c.mean, best[m], abs_tol=1e-12))
            if m in best
            else c
            for m, c in row.cells.items()
        }
        marked.append(Row(row.kind, row.keys, row.n, cells, row.runs))
    return marked
