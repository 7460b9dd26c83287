"""Plots with matplotlib's Agg canvas (no pyplot, no display): Recall@K curves, training curves, t-SNE maps.

Each figure is written as PNG and SVG; file contents are deterministic (no dates in the metadata, fixed
SVG ids, seeded t-SNE on a fixed subsample).
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dmlbench.errors import DmlbenchError
from dmlbench.paths import check_name
from dmlbench.reporting.collect import EVAL_SPLIT, Collection, RunInfo, read_history
from dmlbench.reporting.model import MEASURED, DatasetTable, RenderedFigure, Report, Row
from dmlbench.reporting.render import KIND_SUFFIX, plain
from dmlbench.reporting.tables import loss_sort_key
from dmlbench.utils.io import write_bytes_atomic
from dmlbench.utils.npy import load_npy

log = logging.getLogger(__name__)

TSNE_MAX_POINTS = 1500
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
# Past nine rows the colours repeat, so the marker changes: no two measured rows share colour and marker.
_MARKERS = ("o", "s", "^", "D", "v", "P")
_BASELINE_COLORS = ("#000000", "#7f7f7f")  # baselines also draw dotted


def _measured_style(index: int) -> tuple[str, str]:
    return _COLORS[index % len(_COLORS)], _MARKERS[(index // len(_COLORS)) % len(_MARKERS)]


def _text(value: str) -> str:
    """Untrusted text for matplotlib: one line, and `$` never starts mathtext (which can fail to parse)."""
    return plain(value).replace("$", r"\$")


def _new_figure(width: float, height: float) -> Any:
    import matplotlib

    matplotlib.rcParams["svg.hashsalt"] = "dmlbench"  # stable element ids in SVG output
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(figure: Any, stem: Path) -> bytes:
    """Write stem.png and stem.svg atomically; return the PNG bytes."""
    png, svg = io.BytesIO(), io.BytesIO()
    figure.savefig(png, format="png", metadata={"Software": None})
    figure.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
    write_bytes_atomic(stem.with_suffix(".png"), png.getvalue())
    write_bytes_atomic(stem.with_suffix(".svg"), svg.getvalue())
    return png.getvalue()


def _row_label(table: DatasetTable, row: Row) -> str:
    extra = [f"{c}={row.keys[c]}" for c in table.group_by if c != "loss" and _varies(table, c)]
    kind = KIND_SUFFIX.get(row.kind, "")
    config = [f"{k}={v}" for k, v in row.config.items()]
    return _text(" ".join([row.keys.get("loss", "runs") + kind, *extra, *config]))


def _varies(table: DatasetTable, column: str) -> bool:
    return len({row.keys[column] for row in table.rows if row.kind in MEASURED}) > 1


def _recall_ks(metrics: Sequence[str]) -> list[int]:
    return sorted(int(m.split("@")[1]) for m in metrics if re.fullmatch(r"recall@\d+", m))


def plot_recall(table: DatasetTable, stem: Path) -> RenderedFigure | None:
    """Recall@K against K, one line (mean ± std over seeds) per row, baselines dotted, paper rows dashed."""
    ks = _recall_ks(table.metrics)
    if not ks:
        return None
    figure = _new_figure(6.0, 4.0)
    axes = figure.add_subplot()
    colors: dict[str, str] = {}
    reproduced = [r for r in table.rows if r.kind in (*MEASURED, "baseline")]
    baselines = trained = 0
    for row in reproduced:
        label = _row_label(table, row)
        if row.kind == "baseline":
            color, marker, style = _BASELINE_COLORS[baselines % len(_BASELINE_COLORS)], "o", ":"
            baselines += 1
        else:
            (color, marker), style = _measured_style(trained), "-"
            trained += 1
            colors.setdefault(row.keys.get("loss", label), color)
        cells = [(k, row.cells[f"recall@{k}"]) for k in ks]
        measured = [(k, c.mean, c.std or 0.0) for k, c in cells if c.mean is not None and not c.flagged]
        if measured:
            xs, ys, es = zip(*measured, strict=True)
            axes.errorbar(xs, ys, yerr=es, marker=marker, capsize=3, label=label, color=color, linestyle=style)
    for row in (r for r in table.rows if r.kind == "paper"):
        published = [(k, row.cells[f"recall@{k}"].mean) for k in ks]
        kept = [(k, v) for k, v in published if v is not None]
        if kept:
            px, py = zip(*kept, strict=True)
            color = colors.get(row.keys["loss"], "#7f7f7f")
            axes.plot(
                px, py, linestyle="--", marker="x", color=color, alpha=0.7, label=_text(f"{row.keys['loss']} (paper)")
            )
    axes.set_xscale("log", base=2 if ks[-1] <= 64 else 10)
    axes.set_xticks(ks, [str(k) for k in ks])
    axes.set_xlabel("K")
    axes.set_ylabel("Recall@K (%)")
    axes.set_title(_text(f"{table.dataset}: Recall@K on the test classes"))
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    title = f"{table.dataset}: Recall@K (mean ± std over seeds)"
    return RenderedFigure(table.dataset, stem.name, title, _save(figure, stem))


def plot_training(dataset: str, runs: Sequence[RunInfo], stem: Path) -> RenderedFigure | None:
    """Training loss against step from history.jsonl: one panel per loss, one line per run."""
    histories = [(run, read_history(run)) for run in runs if run.kind != "baseline"]
    histories = [(run, h) for run, h in histories if not h.empty]
    if not histories:
        return None
    losses = sorted({run.loss for run, _ in histories}, key=loss_sort_key)
    figure = _new_figure(4.0 * min(len(losses), 4), 3.2 * ((len(losses) + 3) // 4))
    for index, loss in enumerate(losses):
        axes = figure.add_subplot((len(losses) + 3) // 4, min(len(losses), 4), index + 1)
        for number, (run, history) in enumerate((r, h) for r, h in histories if r.loss == loss):
            values = history["loss"].to_numpy(dtype=float)
            window = max(1, len(values) // 50)
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            steps = history["step"].to_numpy()[window - 1 :]
            axes.plot(
                steps,
                smooth,
                color=_COLORS[number % len(_COLORS)],
                linewidth=1.2,
                label=_text(f"seed {run.key('seed')}" + ("" if run.kind == "trained" else f" ({run.kind})")),
            )
        axes.set_title(_text(loss))
        axes.set_xlabel("step")
        axes.set_ylabel("loss")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="x-small")
    figure.suptitle(_text(f"{dataset}: training loss (moving average)"))
    return RenderedFigure(dataset, stem.name, f"{dataset}: training curves", _save(figure, stem))


def _tsne(embeddings: np.ndarray, seed: int = 0) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(2.0, (len(embeddings) - 1) / 3.0)))
    model = TSNE(n_components=2, method="barnes_hut", init="pca", random_state=seed, perplexity=perplexity)
    result: np.ndarray = model.fit_transform(embeddings.astype(np.float32))
    return result


def plot_tsne(dataset: str, runs: Sequence[RunInfo], stem: Path) -> RenderedFigure | None:
    """2-D Barnes-Hut t-SNE of saved test embeddings coloured by class: one panel per loss (first seed)."""
    chosen: dict[str, RunInfo] = {}
    for run in runs:
        if run.run_dir.embeddings_path(EVAL_SPLIT).is_file() and run.run_dir.labels_path(EVAL_SPLIT).is_file():
            chosen.setdefault(run.loss, run)
    if not chosen:
        return None
    losses = sorted(chosen, key=loss_sort_key)
    figure = _new_figure(4.0 * min(len(losses), 4), 4.0 * ((len(losses) + 3) // 4))
    drawn = 0
    for index, loss in enumerate(losses):
        run = chosen[loss]
        try:
            embeddings = load_npy(run.run_dir.embeddings_path(EVAL_SPLIT))
            labels = load_npy(run.run_dir.labels_path(EVAL_SPLIT))
        except DmlbenchError as err:  # empty/truncated/forged/pickled: the map is optional, the report not
            log.warning("%s: %s; no t-SNE", run.run_id, err.message)
            continue
        if embeddings.ndim != 2 or labels.ndim != 1 or len(embeddings) != len(labels) or len(embeddings) < 5:
            log.warning("%s: embeddings and labels do not match or are too few; no t-SNE", run.run_id)
            continue
        if len(embeddings) > TSNE_MAX_POINTS:
            keep = np.sort(np.random.default_rng(0).choice(len(embeddings), TSNE_MAX_POINTS, replace=False))
            embeddings, labels = embeddings[keep], labels[keep]
        points = _tsne(embeddings)
        axes = figure.add_subplot((len(losses) + 3) // 4, min(len(losses), 4), index + 1)
        classes = np.unique(labels)
        cmap = "tab10" if len(classes) <= 10 else "tab20" if len(classes) <= 20 else "nipy_spectral"
        codes = np.searchsorted(classes, labels)
        axes.scatter(points[:, 0], points[:, 1], c=codes, cmap=cmap, s=4, linewidths=0, rasterized=True)
        axes.set_title(_text(f"{loss} ({run.run_id})"), fontsize="small")
        axes.set_xticks([])
        axes.set_yticks([])
        drawn += 1
    if not drawn:  # every run's saved embeddings were unusable: no empty figure
        return None
    figure.suptitle(_text(f"{dataset}: t-SNE of test embeddings, coloured by class"))
    return RenderedFigure(dataset, stem.name, f"{dataset}: t-SNE of test embeddings", _save(figure, stem))


def retrieval_grids(
    table: DatasetTable, runs: Sequence[RunInfo], name: str, plots_dir: Path, data_root: Path | None
) -> list[RenderedFigure]:
    """Per trained row, the retrieval grid of its first seed (eval/test/retrieval.json), worst queries first.

    PNG only. The images come from the prepared dataset under `data_root`, else from where the
    evaluation read them; a row without a readable sample gets no grid (logged), never an error.
    """
    from dmlbench.reporting.grid import GridRow, ImageSource, draw_retrieval_grid, png_bytes

    by_id = {run.run_id: run for run in runs}
    figures: list[RenderedFigure] = []
    for number, row in enumerate(r for r in table.rows if r.kind in MEASURED):
        members = sorted((by_id[rid] for rid in row.runs if rid in by_id), key=lambda r: (r.seed or 0, r.run_id))
        if not members:
            continue
        run = members[0]
        try:
            record = run.run_dir.read_retrieval(EVAL_SPLIT)
        except DmlbenchError as err:
            log.warning("%s: %s; no retrieval grid", run.run_id, err.message)
            continue
        if record is None or not record.queries:
            continue
        root = data_root / name if data_root is not None else None
        if root is None or not root.is_dir():
            root = Path(record.dataset_root) if record.dataset_root else None
        if root is None or not root.is_dir():
            log.warning("%s: the images of %s are not here; no retrieval grid", run.run_id, table.dataset)
            continue
        lines = [
            GridRow(
                caption=f"{entry.kind} {i + 1}",
                query=entry.query.path,
                neighbours=[(n.path, bool(n.correct)) for n in entry.neighbours],
            )
            for i, entry in enumerate(record.queries)
        ]
        label = _row_label(table, row)
        title = f"{table.dataset}: {label} ({run.run_id}), query then its {record.k} nearest"
        png = png_bytes(draw_retrieval_grid(lines, ImageSource(root), title=_text(title)))
        stem = plots_dir / f"{name}-retrieval-{number + 1}"
        write_bytes_atomic(stem.with_suffix(".png"), png)
        caption = f"{table.dataset}: retrieval, {label} ({run.run_id}); green = same class, red = another"
        figures.append(RenderedFigure(table.dataset, stem.name, caption, png))
    return figures


def make_plots(
    report: Report, collection: Collection, plots_dir: Path, data_root: Path | None = None
) -> tuple[list[RenderedFigure], list[str]]:
    """Write every plot for the report's datasets under `plots_dir` (PNG + SVG; retrieval grids PNG) and
    return them for embedding.

    Plot files are named after the dataset, which comes from a run folder: a name that is not a plain
    name (`dmlbench.paths.check_name`) gets no plot files, and the second list says so.
    """
    plots_dir.mkdir(parents=True, exist_ok=True)
    figures: list[RenderedFigure] = []
    skipped: list[str] = []
    for table in report.tables:
        try:
            name = check_name(table.dataset, "dataset name")
        except DmlbenchError:
            log.warning("dataset name %r is not a plain name: no plot files", table.dataset)
            skipped.append(table.dataset)
            continue
        runs = [run for run in collection.included if run.dataset == table.dataset]
        for figure in (
            plot_recall(table, plots_dir / f"{name}-recall"),
            plot_training(name, runs, plots_dir / f"{name}-training"),
            plot_tsne(name, runs, plots_dir / f"{name}-tsne"),
        ):
            if figure is not None:
                figures.append(figure)
        figures.extend(retrieval_grids(table, runs, name, plots_dir, data_root))
    return figures, skipped
