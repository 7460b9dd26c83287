"""Aggregate runs into comparison tables: one per dataset, comparable seeds as mean ± std with a 95%
Student-t interval, baselines, tuned and ensemble rows, significance against the best, paper rows."""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from dmlbench.errors import MissingInputError, UnknownNameError
from dmlbench.evaluation.describe import approximated, describe_approximation
from dmlbench.evaluation.metrics import known_metric, metric_label
from dmlbench.registry import did_you_mean
from dmlbench.reporting.collect import COLUMN_KEYS, GROUP_COLUMNS, Collection, RunInfo
from dmlbench.reporting.model import MEASURED, Cell, DatasetTable, Report, Row, RowKind, Tuning
from dmlbench.reporting.paper import PaperResults, PaperRow, load_paper_results
from dmlbench.reporting.stats import SIGNIFICANCE, bounded_t_interval, t_interval, welch_p_value

DEFAULT_GROUP_BY = ("loss", "backbone", "embedding_dim", "batch")
# The paper's table order: baselines first, the proposed facility-location loss last.
LOSS_ORDER = ("triplet", "lifted", "npairs", "clustering")
BASELINE_ORDER = ("raw", "untrained")
_FIXED_METRIC_ORDER = ("nmi", "f1", "precision@1", "r_precision", "map@r")
# The metrics a trained loss must beat the baselines on (issue: "on R@1 and NMI").
BASELINE_METRICS = ("recall@1", "nmi")

_RUN_KIND_ROW: dict[str, RowKind] = {
    "trained": "reproduced",
    "baseline": "baseline",
    "final": "tuned",
    "ensemble": "ensemble",
}
_SECTION_ORDER: tuple[str, ...] = ("baseline", "reproduced", "tuned", "ensemble")


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


def in_range(metric: str, value: float) -> bool:
    """Whether a stored value can be a measurement of `metric` (within the metric table's range)."""
    if not math.isfinite(value):
        return False
    info = known_metric(metric)
    return info is None or info.value_range[0] <= value <= info.value_range[1]


def better(metric: str, ours: float, theirs: float) -> bool:
    """Whether `ours` is strictly better than `theirs` by the metric's direction (unknown metrics: higher)."""
    info = known_metric(metric)
    return ours < theirs if info is not None and not info.higher_is_better else ours > theirs


def best_of(metric: str, values: Sequence[float]) -> float:
    """The best of `values` by the metric's direction."""
    info = known_metric(metric)
    return min(values) if info is not None and not info.higher_is_better else max(values)


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


def _row_sort_key(row: Row, group_by: Sequence[str]) -> tuple[object, ...]:
    keys: list[object] = []
    for column in group_by:
        value = row.keys[column]
        if column == "loss":
            order = BASELINE_ORDER.index(value) if row.kind == "baseline" and value in BASELINE_ORDER else None
            keys.append((order, "") if order is not None else loss_sort_key(value))
        else:
            keys.append(_natural(value))
    config = tuple(_natural(f"{k}={v}") for k, v in sorted(row.config.items()))
    study = row.tuning.study if row.tuning else ""
    return (_SECTION_ORDER.index(row.kind), *keys, study, config)


def _aggregate(metric: str, values: list[float], *, approximate: bool = False) -> Cell:
    percents = [v * 100.0 for v in values]
    flagged = not all(in_range(metric, v) for v in values)
    finite = all(math.isfinite(p) for p in percents)
    std = statistics.stdev(percents) if len(percents) > 1 and finite else None
    mean = statistics.fmean(percents) if finite else math.nan
    # an interval stays inside the metric's range (in percent); out-of-range values are flagged, not bounded
    info = known_metric(metric)
    bounded = info is not None and all(math.isfinite(end) for end in info.value_range) and not flagged
    return Cell(
        mean=mean,
        std=std,
        count=len(percents),
        ci95=bounded_t_interval(percents, 100.0 * info.value_range[0], 100.0 * info.value_range[1])
        if info is not None and bounded
        else t_interval(percents),
        flagged=flagged,
        values=tuple(percents),
        approximate=approximate,
    )


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
    trained = [r for r in runs if r.kind != "baseline"] or runs  # a raw-pixel baseline has no batch
    batches = sorted({(r.batch_classes, r.batch_per_class) for r in trained}, key=str)
    batch_text = ", ".join(
        f"{p}x{k} ({p * k} images: {p} classes x {k} per class)" if p and k else "?" for p, k in batches
    )
    modelled = [r for r in runs if not (r.kind == "baseline" and r.baseline == "raw")] or runs  # raw: pixels
    return {
        "split": " | ".join(sorted({describe_splits(r.splits) for r in runs})),
        "backbone": _distinct([r.backbone for r in runs]),
        "embedding_dim": _distinct([r.key("embedding_dim") for r in modelled]),
        "batch": batch_text,
        "retrieval": _distinct([r.eval_protocol or "?" for r in runs]),
    }


def value_text(value: Any) -> str:
    """A config or parameter value as short text (floats to 4 significant digits)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    return str(value)


def _differing_keys(members: list[list[RunInfo]], columns: Sequence[str]) -> list[dict[str, str]]:
    """For groups sharing their grouping keys: the config keys (not shown as columns) where they differ."""
    shown = {key for column in columns for key in COLUMN_KEYS[column]}
    configs = [runs[0].config for runs in members]
    keys = sorted({k for c in configs for k in c} - shown)
    differing = [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]
    return [{k: value_text(c[k]) if k in c else "(default)" for k in differing} for c in configs]


def build_report(
    collection: Collection,
    *,
    group_by: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    paper: PaperResults | None = None,
    intervals: bool = False,
) -> Report:
    """Group comparable runs per dataset x `group_by`, aggregate seeds, mark best and ties, add paper rows.

    `intervals` shows the 95% intervals in the text tables (they are always in csv and json).
    """
    columns = resolve_group_by(group_by)
    included = collection.included
    excluded = tuple((run.run_id, run.excluded or "") for run in collection.excluded)
    if not included:
        reasons = (
            "; ".join(f"{rid}: {why}" for rid, why in excluded) or "only tuning trials, which have no test metrics"
        )
        raise MissingInputError(
            "no complete DML runs to report", hint=f"every run was left out ({reasons}); finish or re-run them"
        )
    available = {m for run in included for m in run.metrics}
    chosen = resolve_metrics(metrics, available)
    paper = paper if paper is not None else load_paper_results()

    tables: list[DatasetTable] = []
    partial: list[tuple[str, str]] = []
    flagged: list[tuple[str, str, str, float]] = []
    baseline_notes: list[str] = []
    used_paper = False
    has_unverified = False
    for dataset in sorted({run.dataset for run in included}):
        runs = [run for run in included if run.dataset == dataset]
        present = {m for run in runs for m in run.metrics}
        table_metrics = (
            tuple(m for m in chosen if m in present) if chosen else tuple(sorted(present, key=metric_sort_key))
        )
        flagged.extend(
            (dataset, run.run_id, m, run.metrics[m])
            for run in runs
            for m in table_metrics
            if m in run.metrics and not in_range(m, run.metrics[m])
        )
        grouped = _group(runs, columns, table_metrics, partial)
        grouped.sort(key=lambda row: _row_sort_key(row, columns))
        measured = _mark_best(grouped, table_metrics)
        baseline_notes.extend(_baseline_notes(dataset, measured, table_metrics))

        rows: list[Row] = []
        shown_paper: set[str] = set()
        for row in measured:
            published = paper.row(dataset, row.keys["loss"]) if "loss" in columns and row.kind == "reproduced" else None
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
        tables.append(
            DatasetTable(
                dataset,
                columns,
                table_metrics,
                _protocol(runs),
                tuple(rows),
                show_config=any(row.config for row in rows),
                show_tuning=any(row.tuning is not None for row in rows),
            )
        )

    every_row = [row for table in tables for row in table.rows if row.kind in (*MEASURED, "baseline")]
    return Report(
        tables=tuple(tables),
        excluded=excluded,
        partial=tuple(sorted(set(partial))),
        paper_citation=paper.citation if used_paper else None,
        paper_verification=paper.verification if used_paper else None,
        has_unverified=has_unverified,
        flagged=tuple(sorted(set(flagged), key=lambda f: (f[0], f[1], f[2]))),
        baseline_notes=tuple(baseline_notes),
        trials=collection.trials,
        has_single_runs=any(row.n == 1 for row in every_row),
        has_ties=any(cell.tied for row in every_row for cell in row.cells.values()),
        show_intervals=intervals,
        approximations=tuple(
            (run.run_id, tuple(describe_approximation(run.approximation))) for run in included if run.approximation
        ),
    )


def _group(
    runs: list[RunInfo], columns: Sequence[str], metrics: Sequence[str], partial: list[tuple[str, str]]
) -> list[Row]:
    """Rows of comparable runs: same kind, grouping keys, study and config (but seed and names)."""
    buckets: dict[tuple[RowKind, tuple[str, ...], str], dict[tuple[tuple[str, str], ...], list[RunInfo]]] = {}
    for run in runs:
        kind = _RUN_KIND_ROW.get(run.kind, "reproduced")
        bucket = buckets.setdefault((kind, tuple(run.key(c) for c in columns), run.study or ""), {})
        bucket.setdefault(run.signature(), []).append(run)
    rows: list[Row] = []
    for (kind, key, _study), variants in buckets.items():
        members = [variants[signature] for signature in sorted(variants)]
        differing = _differing_keys(members, columns) if len(members) > 1 else [{} for _ in members]
        for group, config in zip(members, differing, strict=True):
            cells: dict[str, Cell] = {}
            for metric in metrics:
                values = [run.metrics[metric] for run in group if metric in run.metrics]
                partial.extend((run.run_id, metric) for run in group if metric not in run.metrics)
                approximate = any(approximated(metric, run.approximation) for run in group if metric in run.metrics)
                cells[metric] = _aggregate(metric, values, approximate=approximate) if values else Cell(mean=None)
            rows.append(
                Row(
                    kind,
                    dict(zip(columns, key, strict=True)),
                    len(group),
                    cells,
                    tuple(sorted(run.run_id for run in group)),
                    config,
                    _tuning(group) if kind in ("tuned", "ensemble") else None,
                )
            )
    return rows


def _tuning(group: list[RunInfo]) -> Tuning:
    first = group[0]
    return Tuning(study=first.study or "?", params=dict(first.tuned_params or {}), trials=first.tuning_trials)


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
        cell, theirs = row.cells[metric], published.metrics.get(metric)
        ours = None if cell.flagged else cell.mean
        diff = ours - theirs if ours is not None and theirs is not None else None
        cells[metric] = Cell(mean=diff, unverified=diff is not None and metric in published.unverified)
    return Row("difference", dict(row.keys), None, cells, row.runs, dict(row.config))


def _usable(cell: Cell) -> bool:
    return cell.mean is not None and not cell.flagged and math.isfinite(cell.mean)


def _mark_best(rows: list[Row], metrics: Sequence[str]) -> list[Row]:
    """Per column: bold the best trained mean (by the metric's direction); mark the rows Welch's test cannot
    tell from it.

    Only meaningful with two trained rows or more; flagged (out-of-range) values never count.
    """
    candidates = [row for row in rows if row.kind in MEASURED]
    if len(candidates) < 2:
        return rows
    updates: dict[int, dict[str, Cell]] = {id(row): dict(row.cells) for row in rows}
    for metric in metrics:
        usable = [row for row in candidates if _usable(row.cells[metric])]
        if not usable:
            continue
        top = best_of(metric, [row.cells[metric].mean or 0.0 for row in usable])
        best_rows = [row for row in usable if math.isclose(row.cells[metric].mean or 0.0, top, abs_tol=1e-12)]
        reference = max(best_rows, key=lambda row: row.cells[metric].count).cells[metric]
        for row in usable:
            cell = row.cells[metric]
            if any(row is b for b in best_rows):
                updates[id(row)][metric] = replace(cell, best=True)
                continue
            p = welch_p_value(reference.values, cell.values)
            updates[id(row)][metric] = replace(cell, tied=p is not None and p >= SIGNIFICANCE, p_value=p)
    return [
        Row(row.kind, row.keys, row.n, updates[id(row)], row.runs, row.config, row.tuning)
        if row.kind in MEASURED
        else row
        for row in rows
    ]


def row_label(row: Row) -> str:
    """A row named for sentences: loss, what kind of row, and what sets it apart."""
    loss = row.keys.get("loss", "runs")
    suffix = {"baseline": " baseline", "tuned": " (tuned)", "ensemble": " (ensemble)"}.get(row.kind, "")
    config = ", ".join(f"{k}={v}" for k, v in row.config.items())
    study = f" study {row.tuning.study}" if row.tuning else ""
    extra = f" ({config})" if config else ""
    return f"{loss}{suffix}{extra}{study}"


def _baseline_notes(dataset: str, rows: Sequence[Row], metrics: Sequence[str]) -> list[str]:
    """Name every trained row that does not beat the best baseline on R@1 and NMI (per dataset), "beat" and
    "best" by each metric's direction."""
    baselines = [row for row in rows if row.kind == "baseline"]
    checked = [m for m in BASELINE_METRICS if m in metrics]
    if not baselines or not checked:
        return []
    notes: list[str] = []
    for row in rows:
        if row.kind not in MEASURED:
            continue
        failures = []
        for metric in checked:
            cell = row.cells[metric]
            usable = [b for b in baselines if _usable(b.cells[metric])]
            if not usable or not _usable(cell):
                continue
            top = best_of(metric, [b.cells[metric].mean or 0.0 for b in usable])
            best = next(b for b in usable if b.cells[metric].mean == top)
            theirs, ours = top, cell.mean or 0.0
            if not better(metric, ours, theirs):
                sign = "≥" if better(metric, 0.0, 1.0) else "≤"  # "not better than", in the metric's direction
                failures.append(f"{metric_label(metric)} {ours:.2f} {sign} {theirs:.2f} ({best.keys.get('loss', '?')})")
        if failures:
            notes.append(f"{dataset}: {row_label(row)} does not beat the baselines: {'; '.join(failures)}.")
    return notes
