"""Core of `dmlbench report`: run folders -> comparison tables (+ plots) in markdown, csv, latex, html or json.

Deliberately torch- and faiss-free: it reads run folders only through `dmlbench.rundir` (manifest, resolved
config, test metrics, history and, for t-SNE, saved embeddings), so it works on run folders copied anywhere.
Run folders are untrusted input: every renderer escapes what it prints, and names become file names only
through `dmlbench.paths.check_name`.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from dmlbench.events import Event, EventHandler, emit
from dmlbench.reporting.collect import Collection, RunInfo, collect, find_run_dirs
from dmlbench.reporting.model import RenderedFigure, Report
from dmlbench.reporting.render import RENDERERS
from dmlbench.reporting.tables import DEFAULT_GROUP_BY, build_report

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
    paths: Sequence[str | os.PathLike[str]],
    *,
    fmt: str = "markdown",
    group_by: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    plots_dir: str | os.PathLike[str] | None = None,
    on_event: EventHandler | None = None,
    studies: bool = False,
    storage: str | os.PathLike[str] | None = None,
    intervals: bool = False,
    data_root: str | os.PathLike[str] | None = None,
) -> str:
    """Render the runs under `paths` (runs roots or run dirs) as one report string in format `fmt`.

    Complete runs with test metrics are grouped per dataset x `group_by` (default loss, backbone,
    embedding_dim, batch) into rows of comparable seeds (configs equal but for the seed), with mean ± std,
    a 95% Student-t interval and Welch's test against the best row; baselines, tuned and ensemble runs are
    rows of their own, the paper's rows are added where they exist. Failed, incomplete and
    overlapping-split runs are listed in the notes, never aggregated; tuning trials are never rows. When no
    run is usable a MissingInputError is raised.

    With `studies` (or `storage`, an Optuna storage URL or journal file), every tuning study gets a
    summary and, where plots are drawn, its optimisation history and parameter importances; the html
    format adds them by itself when a runs root holds the default study journal. With `plots_dir`, PNG
    and SVG plots are written there; the html format always embeds the plots (drawn in a temporary folder
    when `plots_dir` is None), retrieval grids included: their images are read from the prepared datasets
    under `data_root` (else where the evaluation found them). `intervals` adds the 95% intervals to the
    markdown, latex and html tables.
    """
    renderer = RENDERERS.get(fmt)  # unknown format fails before any reading
    collection = collect(paths)
    for run in collection.excluded:
        emit(on_event, Event(kind="log", task="report", message=f"left out {run.run_id}: {run.excluded}"))
    built = build_report(collection, group_by=group_by, metrics=metrics, intervals=intervals)
    storages = _storages(paths, studies=studies, storage=storage, fmt=fmt)
    if plots_dir is not None:
        built, figures = _draw(built, collection, Path(plots_dir), storages, on_event, data_root)
    elif fmt == "html":
        with tempfile.TemporaryDirectory(prefix="dmlbench-plots-") as tmp:
            built, figures = _draw(built, collection, Path(tmp), storages, on_event, data_root)
    else:
        built, figures = _studies(built, storages, None, [], on_event), []
    text: str = renderer(built, figures)
    return text


def _storages(
    paths: Sequence[str | os.PathLike[str]], *, studies: bool, storage: str | os.PathLike[str] | None, fmt: str
) -> list[str | os.PathLike[str]]:
    from dmlbench.errors import MissingInputError

    if storage is not None:
        return [storage]
    if not studies and fmt != "html":
        return []
    from dmlbench.reporting.studies import JOURNAL, STORAGE_HINT, find_storages

    found: list[str | os.PathLike[str]] = list(find_storages(paths))
    if studies and not found:
        raise MissingInputError(f"no study storage ({JOURNAL}) in {', '.join(map(str, paths))}", hint=STORAGE_HINT)
    return found


def _studies(
    built: Report,
    storages: Sequence[str | os.PathLike[str]],
    plots_dir: Path | None,
    figures: list[RenderedFigure],
    on_event: EventHandler | None,
) -> Report:
    if not storages:
        return built
    from dmlbench.reporting.studies import load_studies
    from dmlbench.utils.redact import redact

    shown = ", ".join(redact(str(storage)) for storage in storages)
    emit(on_event, Event(kind="log", task="report", message=f"reading studies from {shown}"))
    summaries, drawn = load_studies(storages, plots_dir)
    figures.extend(drawn)
    return dataclasses.replace(built, studies=tuple(summaries))


def _draw(
    built: Report,
    collection: Collection,
    plots_dir: Path,
    storages: Sequence[str | os.PathLike[str]],
    on_event: EventHandler | None,
    data_root: str | os.PathLike[str] | None = None,
) -> tuple[Report, list[RenderedFigure]]:
    from dmlbench.reporting.plots import make_plots

    emit(on_event, Event(kind="log", task="report", message=f"drawing plots in {plots_dir}"))
    figures, skipped = make_plots(built, collection, plots_dir, Path(data_root) if data_root is not None else None)
    for name in skipped:
        emit(on_event, Event(kind="log", task="report", message=f"no plots for dataset {name!r}: not a plain name"))
    return _studies(built, storages, plots_dir, figures, on_event), figures
