"""The report's data records: what `build_report` produces and every renderer, plot and study summary reads.

A leaf of the reporting package (it imports none of it), so tables, render, plots and studies all depend on
it instead of on each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

RowKind = Literal["baseline", "reproduced", "tuned", "ensemble", "paper", "difference"]
# Rows that measure a trained loss: candidates for "best" and for the significance mark.
MEASURED: tuple[str, ...] = ("reproduced", "tuned", "ensemble")


@dataclass(frozen=True)
class Cell:
    """One table value in percent; `best` follows the metric's direction (evaluation/metrics.py's table)."""

    mean: float | None
    std: float | None = None
    count: int = 0
    best: bool = False
    unverified: bool = False
    ci95: tuple[float, float] | None = None
    # A value outside the metric's range (or non-finite) in some run: shown with a warning, never best.
    flagged: bool = False
    # Not significantly different from the best row of this column (Welch, p >= SIGNIFICANCE).
    tied: bool = False
    p_value: float | None = None
    values: tuple[float, ...] = ()
    # Some run of the row computed this metric beyond exact search (a sample or an approximate index).
    approximate: bool = False


@dataclass(frozen=True)
class Tuning:
    """What a tuned (final / ensemble) row was tuned with."""

    study: str
    params: dict[str, Any]
    trials: int | None


@dataclass(frozen=True)
class Row:
    """A group of comparable runs (seeds), a published paper row, or their difference."""

    kind: RowKind
    keys: dict[str, str]
    n: int | None
    cells: dict[str, Cell]
    runs: tuple[str, ...] = ()
    # Config keys (dotted) that set this row apart from rows with the same grouping keys.
    config: dict[str, str] = field(default_factory=dict)
    tuning: Tuning | None = None


@dataclass(frozen=True)
class DatasetTable:
    """The comparison for one dataset and the protocol it was measured under."""

    dataset: str
    group_by: tuple[str, ...]
    metrics: tuple[str, ...]
    protocol: dict[str, str]
    rows: tuple[Row, ...]
    show_config: bool = False
    show_tuning: bool = False


@dataclass(frozen=True)
class Report:
    """Every table plus what was left out and why."""

    tables: tuple[DatasetTable, ...]
    excluded: tuple[tuple[str, str], ...]
    partial: tuple[tuple[str, str], ...]
    paper_citation: str | None = None
    paper_verification: str | None = None
    has_unverified: bool = False
    # (dataset, run_id, metric, value) of every out-of-range or non-finite value.
    flagged: tuple[tuple[str, str, str, float], ...] = ()
    # One sentence per trained row that does not beat the best baseline on R@1 / NMI.
    baseline_notes: tuple[str, ...] = ()
    trials: int = 0
    has_single_runs: bool = False
    has_ties: bool = False
    studies: tuple[StudySummary, ...] = ()
    # Intervals in the text tables (markdown, latex, html): off by default, so a row fits a terminal.
    show_intervals: bool = False
    # (run id, sentences) for every run evaluated beyond exact search.
    approximations: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class RenderedFigure:
    """A plot as PNG bytes, for formats that embed figures (html); study plots carry their study."""

    dataset: str
    name: str
    title: str
    png: bytes
    study: str | None = None


@dataclass(frozen=True)
class StudySummary:
    """What the report says about one study."""

    name: str
    direction: str
    metric: str | None
    complete: int
    pruned: int
    failed: int
    running: int
    best_value: float | None
    best_params: dict[str, Any]
    note: str | None = None  # why a plot is missing
