"""Core of `dmlbench report`: run folders -> comparison tables (+ plots) in markdown, csv, latex, html or json.

Deliberately torch- and faiss-free: it reads only manifest.json, config.toml, eval/*/metrics.json,
train/history.jsonl and (for t-SNE) saved embeddings, so it works on run folders copied anywhere.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from dmlbench.events import Event, EventHandler, emit
from dmlbench.reporting.collect import Collection, RunInfo, collect, find_run_dirs
from dmlbench.reporting.render import RENDERERS, RenderedFigure
from dmlbench.reporting.tables import DEFAULT_GROUP_BY, Report, build_report

FORMATS = tuple(RENDERERS.names())

__all__ = [
    "DEFAULT_GROUP_BY",
    "FORMATS",
    "RENDERERS",
    "Collection",
    "Report",
    "RunInfo",
    "build_report",
    "collect",
    "find_run_dirs",
    "report",
]


def report(
    paths: Sequence[Path],
    *,
    fmt: str = "markdown",
    group_by: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    plots_dir: Path | None = None,
    on_event: EventHandler | None = None,
) -> str:
    """Render the runs under `paths` (runs roots or run dirs) as one report string in format `fmt`.

    Complete runs with test metrics are grouped per dataset x `group_by` (default loss, backbone,
    embedding_dim, batch) and aggregated over seeds; the paper's rows are added where they exist.
    Failed, incomplete and overlapping-split runs are listed in the notes, never aggregated; when no run
    is usable a MissingInputError is raised. With `plots_dir`, PNG and SVG plots are written there; the
    html format always embeds the plots (drawn in a temporary folder when `plots_dir` is None).
    """
    renderer = RENDERERS.get(fmt)  # unknown format fails before any reading
    collection = collect(paths)
    for run in collection.excluded:
        emit(on_event, Event(kind="log", task="report", message=f"left out {run.run_id}: {run.excluded}"))
    built = build_report(collection, group_by=group_by, metrics=metrics)
    figures: list[RenderedFigure] = []
    if plots_dir is not None:
        figures = _plots(built, collection, plots_dir, on_event)
    elif fmt == "html":
        with tempfile.TemporaryDirectory(prefix="dmlbench-plots-") as tmp:
            figures = _plots(built, collection, Path(tmp), on_event)
    text: str = renderer(built, figures)
    return text


def _plots(
    built: Report, collection: Collection, plots_dir: Path, on_event: EventHandler | None
) -> list[RenderedFigure]:
    from dmlbench.reporting.plots import make_plots

    emit(on_event, Event(kind="log", task="report", message=f"drawing plots in {plots_dir}"))
    return make_plots(built, collection, plots_dir)
