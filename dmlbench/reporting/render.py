"""Renderers: one function per output format, looked up through the RENDERERS registry.

Every renderer is deterministic (no timestamps, fixed ordering, fixed float formatting), so the same runs
give the same bytes.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import re
from collections.abc import Callable, Sequence

from dmlbench.evaluation.metrics import direction_note, metric_label
from dmlbench.registry import Registry
from dmlbench.reporting.model import MEASURED, Cell, DatasetTable, RenderedFigure, Report, Row, StudySummary
from dmlbench.reporting.stats import SIGNIFICANCE
from dmlbench.reporting.tables import metric_sort_key, value_text

RENDERERS: Registry[Callable[..., str]] = Registry("format")
RENDERERS.add("markdown", "dmlbench.reporting.render:render_markdown")
RENDERERS.add("csv", "dmlbench.reporting.render:render_csv")
RENDERERS.add("latex", "dmlbench.reporting.render:render_latex")
RENDERERS.add("html", "dmlbench.reporting.render:render_html")
RENDERERS.add("json", "dmlbench.reporting.render:render_json")

KEY_LABELS = {"loss": "loss", "backbone": "backbone", "embedding_dim": "dim", "batch": "batch", "seed": "seed"}
PROTOCOL_LABELS = (
    ("split", "split"),
    ("backbone", "backbone"),
    ("embedding_dim", "embedding"),
    ("batch", "batch (P×K)"),
    ("retrieval", "retrieval"),
)
DAGGER = "†"
TIED = "≈"
FLAG = "⚠"
APPROXIMATE = "§"
BEST = "▲"  # the compact markdown table's best mark (bold would cost 4 characters per cell)
STAT_ROWS = (*MEASURED, "baseline")


# ---------------------------------------------------------------- escaping untrusted text

# Run ids, dataset, loss and study names come from run folders someone else may have written.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def plain(text: str) -> str:
    """One line of text: control characters (newlines break table rows) become spaces."""
    return _CONTROL.sub(" ", text)


_MD_SPECIAL = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|", "\\": "\\\\", "`": "\\`", "*": "\\*"}
_MD_SPECIAL |= {"[": "\\[", "]": "\\]"}


def md_escape(text: str) -> str:
    """Markdown-safe text: no inline HTML (CommonMark passes it through), no table breaks, no links/code."""
    return "".join(_MD_SPECIAL.get(ch, ch) for ch in plain(text))


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text(text: str) -> str:
    """A text cell a spreadsheet will not run as a formula (OWASP CSV injection): prefixed with '."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _number(value: float, *, signed: bool = False) -> str:
    if not math.isfinite(value):
        return str(value)  # nan, inf: flagged next to it
    if abs(value) < 0.005:  # never print "-0.00"
        value = 0.0
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def cell_text(
    cell: Cell,
    row: Row,
    *,
    plus_minus: str = " ± ",
    dagger: str = DAGGER,
    intervals: bool = True,
    compact: bool = False,
) -> str:
    """A value as the paper prints it: percent, two decimals, ± std, [95% CI] when `intervals`, marks.

    `compact` (the markdown table without intervals) drops the spaces and marks the best with BEST, so
    a ten-loss table fits a 160-column terminal.
    """
    if cell.mean is None:
        return "-"
    space = "" if compact else " "
    text = _number(cell.mean, signed=row.kind == "difference")
    if row.kind in STAT_ROWS:
        if cell.std is not None:
            text += f"{plus_minus.strip() if compact else plus_minus}{cell.std:.2f}"
        if intervals and cell.ci95 is not None:
            text += f" [{_number(cell.ci95[0])}, {_number(cell.ci95[1])}]"
        if row.n is not None and cell.count < row.n:
            text += f" (n={cell.count})"
    if cell.approximate:
        text += APPROXIMATE
    if cell.unverified:
        text += dagger
    if compact and cell.best:
        text += BEST
    if cell.tied:
        text += f"{space}{TIED}"
    if cell.flagged:
        text += f"{space}{FLAG}"
    return text


KIND_SUFFIX = {"paper": " (paper)", "baseline": " (baseline)", "tuned": " (tuned)", "ensemble": " (ensemble)"}


def key_texts(table: DatasetTable, row: Row) -> list[str]:
    """The grouping cells of a row (raw text); the loss column says what kind of row it is."""
    texts = []
    for column in table.group_by:
        value = row.keys.get(column, "")
        if row.kind == "difference":
            value = "Δ vs paper" if column == "loss" else ""
        elif column == "loss":
            value += KIND_SUFFIX.get(row.kind, "")
        texts.append(value)
    if table.show_config:
        texts.append(config_text(row) if row.kind != "difference" else "")
    if table.show_tuning:
        texts.append(tuning_text(row))
    return texts


def config_text(row: Row) -> str:
    """The settings that set a row apart: "optim.lr=0.001, schedule.epochs=10"."""
    return ", ".join(f"{key}={value}" for key, value in row.config.items())


def tuning_text(row: Row) -> str:
    """ "study S, 12 trials: optim.lr=0.0003, loss.margin=0.2" for tuned and ensemble rows."""
    if row.tuning is None:
        return ""
    trials = f", {row.tuning.trials} trials" if row.tuning.trials is not None else ""
    params = ", ".join(f"{k}={value_text(v)}" for k, v in sorted(row.tuning.params.items()))
    return f"study {row.tuning.study}{trials}" + (f": {params}" if params else "")


def header(table: DatasetTable) -> list[str]:
    """Column titles: grouping columns, config / tuning when shown, n, then metrics (NMI, R@1, ...)."""
    extra = (["config"] if table.show_config else []) + (["tuning"] if table.show_tuning else [])
    return [KEY_LABELS[c] for c in table.group_by] + extra + ["n"] + [metric_label(m) for m in table.metrics]


def notes(report: Report) -> list[str]:
    """Footnotes shared by every format (plain, unescaped text: each renderer escapes it)."""
    interval = (
        ", then the 95% confidence interval of the mean in brackets (Student t with n − 1 degrees of freedom, "
        "taken on the logit scale for metrics bounded in [0, 100] so that it stays inside them)"
        if report.show_intervals
        else " (95% confidence intervals: --intervals, and always in csv and json)"
    )
    lines = [
        f"Values are percentages: mean ± sample standard deviation over the n seeds of a group{interval}. Runs are "
        "seeds of one group only when their configs agree on everything but the seed. The best trained value per "
        f"column is marked (bold; {BEST} in the compact markdown table; "
        f"{direction_note(sorted({m for t in report.tables for m in t.metrics}))})."
    ]
    if report.approximations:
        described = "; ".join(f"{run}: {', '.join(lines) or 'approximate'}" for run, lines in report.approximations)
        lines.append(f"{APPROXIMATE} Not exact (evaluated beyond exact search): {described}.")
    if report.has_ties:
        lines.append(
            f"{TIED}: not significantly different from the best of its column (Welch's t-test, two-sided, "
            f"p ≥ {SIGNIFICANCE}); only rows with n ≥ 2, as the best's, are tested."
        )
    if report.has_single_runs:
        lines.append("n = 1: one run has no ± and no confidence interval, and is not tested against the best.")
    if any(table.show_config for table in report.tables):
        lines.append(
            "config: the settings in which rows of the same loss differ; such runs are never averaged together."
        )
    if any(row.kind == "baseline" for table in report.tables for row in table.rows):
        lines.append(
            "Baseline rows (no training): raw = the input pixels, flattened and L2-normalised; untrained = the "
            "network at its initialisation (ImageNet weights when pretrained). They are never marked best."
        )
    lines.extend(report.baseline_notes)
    if report.paper_citation:
        lines.append(
            f"Paper rows: {report.paper_citation}. {report.paper_verification}. "
            "Δ = reproduced − paper, in percentage points."
        )
    if report.has_unverified:
        lines.append(f"{DAGGER} Not verified against the paper (recalled value; see docs/losses.md §7).")
    if report.flagged:
        shown = ", ".join(f"{run} ({metric} = {value!r})" for _, run, metric, value in report.flagged)
        lines.append(
            f"{FLAG} Outside the metric's range (a fraction in [0, 1]) or not finite, so not a valid measurement "
            f"and never marked best: {shown}."
        )
    if report.partial:
        missing = ", ".join(f"{run} ({metric})" for run, metric in report.partial)
        lines.append(f"(n=k): the cell averages only the k runs that report the metric; missing: {missing}.")
    if report.trials:
        lines.append(f"{report.trials} tuning trial runs are not rows: they are validated on training classes only.")
    for study in report.studies:
        if study.note:
            lines.append(f"Study {study.name}: {study.note}.")
    for run_id, reason in report.excluded:
        lines.append(f"Left out: {run_id}: {reason}.")
    return lines


def protocol_items(table: DatasetTable) -> list[tuple[str, str]]:
    """(label, text) pairs stating the split, backbone, embedding size, batch and retrieval protocol."""
    return [(label, table.protocol[key]) for key, label in PROTOCOL_LABELS if key in table.protocol]


STUDY_HEADER = ["study", "direction", "metric", "complete", "pruned", "failed", "running", "best", "best parameters"]


def study_cells(study: StudySummary) -> list[str]:
    """One study as table cells (raw text)."""
    best = value_text(study.best_value) if study.best_value is not None else "-"
    params = ", ".join(f"{k}={value_text(v)}" for k, v in sorted(study.best_params.items())) or "-"
    counts = [str(study.complete), str(study.pruned), str(study.failed), str(study.running)]
    return [study.name, study.direction, study.metric or "-", *counts, best, params]


# ---------------------------------------------------------------- markdown


def _md_table(head: list[str], body: list[list[str]], numeric: list[bool]) -> list[str]:
    widths = [max(3, *(len(r[i]) for r in [head, *body])) for i in range(len(head))]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |"]
    out.append(
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if num else (":" + "-" * (w + 1)) for w, num in zip(widths, numeric, strict=True)
        )
        + "|"
    )
    for cells in body:
        padded = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric, strict=True)]
        out.append("| " + " | ".join(padded) + " |")
    return out


def render_markdown(report: Report, figures: Sequence[RenderedFigure] = ()) -> str:
    """GitHub-flavoured markdown: per dataset a heading, the protocol and a pipe table; notes at the end."""
    out: list[str] = []
    for table in report.tables:
        out.append(f"## {md_escape(table.dataset)}")
        out.append("")
        out.append("Protocol: " + "; ".join(f"**{label}** {md_escape(text)}" for label, text in protocol_items(table)))
        out.append("")
        wide = report.show_intervals
        # a column holding one value for every row is already in the protocol line above: not repeated
        # (judged on the measured rows: a baseline that differs, e.g. raw pixels' dimension, says so in its
        # own first cell instead of widening the whole table past a terminal)
        key_count = len(header(table)) - 1 - len(table.metrics)
        labels = header(table)
        rows_keys = [key_texts(table, row) for row in table.rows]
        measured = [keys for row, keys in zip(table.rows, rows_keys, strict=True) if row.kind != "baseline"]
        measured = measured or rows_keys
        shown = [
            i
            for i in range(key_count)
            if wide or i == 0 or i >= len(table.group_by) or len({keys[i] for keys in measured}) > 1
        ]
        hidden = [i for i in range(key_count) if i not in shown]
        body = []
        for row, keys in zip(table.rows, rows_keys, strict=True):
            cells = [md_escape(keys[i]) for i in shown]
            apart = [
                f"{keys[i]}-d" if labels[i] == "dim" else f"{labels[i]} {keys[i]}"
                for i in hidden
                if keys[i] != measured[0][i]
            ]
            if apart:  # "raw (baseline)" -> "raw (baseline, 1024-d)"
                extra = md_escape(", ".join(apart))
                cells[0] = cells[0][:-1] + f", {extra})" if cells[0].endswith(")") else f"{cells[0]} ({extra})"
            cells.append("" if row.n is None else str(row.n))
            for metric in table.metrics:
                cell = row.cells[metric]
                # numbers and marks only: nothing untrusted to escape
                text = cell_text(cell, row, intervals=wide, compact=not wide)
                cells.append(f"**{text}**" if cell.best and wide else text)
            body.append(cells)
        head = header(table)
        head = [head[i] for i in shown] + head[key_count:]
        out += _md_table(head, body, [False] * len(shown) + [True] * (1 + len(table.metrics)))
        out.append("")
    if report.studies:
        out += ["## Studies", ""]
        body = [[md_escape(c) for c in study_cells(s)] for s in report.studies]
        out += _md_table(STUDY_HEADER, body, [False] * 3 + [True] * 5 + [False])
        out.append("")
    out.append("Notes:")
    out.append("")
    out.extend(f"- {md_escape(line)}" for line in notes(report))
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- csv


def render_csv(report: Report, figures: Sequence[RenderedFigure] = ()) -> str:
    """One flat table over every dataset: a row per group, baseline, paper row and difference (percent)."""
    group_columns = sorted({c for t in report.tables for c in t.group_by}, key=list(KEY_LABELS).index)
    metrics = sorted({m for t in report.tables for m in t.metrics}, key=metric_sort_key)
    extra = (["config"] if any(t.show_config for t in report.tables) else []) + (
        ["tuning"] if any(t.show_tuning for t in report.tables) else []
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["dataset", "row", *group_columns, *extra, "n"]
        + [f"{m}{suffix}" for m in metrics for suffix in ("", "_std", "_ci95_low", "_ci95_high")]
        + ["best", "not_significantly_worse", "out_of_range", "unverified", "runs"]
    )

    def number(value: float | None) -> str:
        return "" if value is None or not math.isfinite(value) else f"{value:.4f}"

    for table in report.tables:
        for row in table.rows:
            values: list[str] = []
            for metric in metrics:
                cell = row.cells.get(metric)
                values.append(number(cell.mean if cell else None))
                values.append(number(cell.std if cell else None))
                values.append(number(cell.ci95[0] if cell and cell.ci95 else None))
                values.append(number(cell.ci95[1] if cell and cell.ci95 else None))

            def which(flag: str, cells: dict[str, Cell] = row.cells) -> str:
                return ";".join(m for m in metrics if (c := cells.get(m)) is not None and getattr(c, flag))

            texts = {"config": config_text(row), "tuning": tuning_text(row)}
            writer.writerow(
                [
                    csv_text(plain(table.dataset)),
                    row.kind,
                    # "-" is the paper rows' own placeholder, not data: an empty cell, not "'-".
                    *(
                        "" if row.kind == "paper" and row.keys.get(c) == "-" else csv_text(plain(row.keys.get(c, "")))
                        for c in group_columns
                    ),
                    *(csv_text(plain(texts[c])) for c in extra),
                    "" if row.n is None else row.n,
                    *values,
                    which("best"),
                    which("tied"),
                    which("flagged"),
                    which("unverified"),
                    csv_text(plain(";".join(row.runs))),
                ]
            )
    return buffer.getvalue()


# ---------------------------------------------------------------- json


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 4)


def _json_cell(cell: Cell) -> dict[str, object]:
    return {
        "mean": _finite(cell.mean),
        "std": _finite(cell.std),
        "ci95": None if cell.ci95 is None else [_finite(cell.ci95[0]), _finite(cell.ci95[1])],
        "count": cell.count,
        "best": cell.best,
        "not_significantly_worse": cell.tied,
        "p_vs_best": None if cell.p_value is None else round(cell.p_value, 6),
        "out_of_range": cell.flagged,
        "unverified": cell.unverified,
    }


def _json_row(table: DatasetTable, row: Row) -> dict[str, object]:
    tuning = (
        None
        if row.tuning is None
        else {"study": row.tuning.study, "params": row.tuning.params, "trials": row.tuning.trials}
    )
    return {
        "kind": row.kind,
        "keys": row.keys,
        "config": row.config,
        "tuning": tuning,
        "n": row.n,
        "runs": list(row.runs),
        "values": {m: _json_cell(row.cells[m]) for m in table.metrics},
    }


def _json_safe(value: object) -> object:
    """Tuned parameters come from a study: keep JSON valid when one is not finite."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def render_json(report: Report, figures: Sequence[RenderedFigure] = ()) -> str:
    """Machine-readable report: tables with protocol, rows with per-metric statistics, exclusions."""
    payload = {
        "schema_version": 2,
        "unit": "percent",
        "datasets": [
            {
                "dataset": table.dataset,
                "protocol": table.protocol,
                "group_by": list(table.group_by),
                "metrics": list(table.metrics),
                "rows": [_json_row(table, row) for row in table.rows],
            }
            for table in report.tables
        ],
        "studies": [
            {
                "study": s.name,
                "direction": s.direction,
                "metric": s.metric,
                "complete": s.complete,
                "pruned": s.pruned,
                "failed": s.failed,
                "running": s.running,
                "best_value": s.best_value,
                "best_params": s.best_params,
            }
            for s in report.studies
        ],
        "excluded": [{"run_id": run_id, "reason": reason} for run_id, reason in report.excluded],
        "partial": [{"run_id": run_id, "metric": metric} for run_id, metric in report.partial],
        "out_of_range": [
            {"dataset": d, "run_id": r, "metric": m, "value": _finite(v)} for d, r, m, v in report.flagged
        ],
        "tuning_trials": report.trials,
        "paper": {"citation": report.paper_citation, "verification": report.paper_verification},
        "notes": notes(report),
    }
    return json.dumps(_json_safe(payload), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


# ---------------------------------------------------------------- latex

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "×": r"$\times$",
    "≤": r"$\leq$",
    "≥": r"$\geq$",
    "−": "-",
    APPROXIMATE: r"\S{}",
    BEST: r"$\blacktriangle$",
    DAGGER: r"\textsuperscript{\dag}",
    TIED: r"$\approx$",
    FLAG: r"\textsuperscript{(!)}",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials and map the report's symbols to math mode."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in plain(text))


def render_latex(report: Report, figures: Sequence[RenderedFigure] = ()) -> str:
    """A booktabs `table` per dataset (needs \\usepackage{booktabs}); best values in bold."""
    out: list[str] = []
    for table in report.tables:
        caption = f"{table.dataset}. " + "; ".join(f"{label}: {text}" for label, text in protocol_items(table)) + "."
        head = header(table)
        spec = "l" * (len(head) - 1 - len(table.metrics)) + "r" * (1 + len(table.metrics))
        out += [r"\begin{table}[ht]", r"\centering", r"\caption{" + latex_escape(caption) + "}"]
        out += [r"\label{tab:dmlbench-" + latex_escape(table.dataset) + "}"]
        out += [r"\begin{tabular}{" + spec + "}", r"\toprule"]
        out.append(" & ".join(latex_escape(h) for h in head) + r" \\")
        out.append(r"\midrule")
        previous: str | None = None
        for row in table.rows:
            if previous == "baseline" and row.kind != "baseline":  # baselines are their own block
                out.append(r"\midrule")
            previous = row.kind
            cells = [latex_escape(t) for t in key_texts(table, row)]
            cells.append("" if row.n is None else str(row.n))
            for metric in table.metrics:
                cell = row.cells[metric]
                text = latex_escape(cell_text(cell, row, intervals=report.show_intervals))
                cells.append(r"\textbf{" + text + "}" if cell.best else text)
            out.append(" & ".join(cells) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    if report.studies:
        out += [r"\begin{table}[ht]", r"\centering", r"\caption{Tuning studies.}"]
        out += [r"\begin{tabular}{lllrrrrrl}", r"\toprule", " & ".join(STUDY_HEADER) + r" \\", r"\midrule"]
        out += [" & ".join(latex_escape(c) for c in study_cells(s)) + r" \\" for s in report.studies]
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    out.append(r"\begin{itemize}")
    out.extend(r"\item " + latex_escape(line) for line in notes(report))
    out.append(r"\end{itemize}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- html

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em; color: #1b1b1b;
       overflow-wrap: anywhere; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
div.table-wrap { overflow-x: auto; max-width: 100%; margin: 1em 0; }
table.results { border-collapse: collapse; font-size: 0.95em; }
table.results th, table.results td { border: 1px solid #bbb; padding: 0.3em 0.7em; overflow-wrap: normal; }
table.results th { background: #e8eef7; }
table.results td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.paper td { color: #555; font-style: italic; } tr.difference td { color: #555; background: #f7f7f7; }
tr.baseline td { background: #fdf6e3; color: #5c4b00; }
tr.baseline + tr:not(.baseline) td { border-top: 3px double #888; }
tr.tuned td:first-child, tr.ensemble td:first-child { font-style: italic; }
td.best { font-weight: bold; background: #e6f4e6; } td.flagged { color: #a40000; }
dl.protocol dt { font-weight: bold; float: left; clear: left; width: 8em; } dl.protocol dd { margin-left: 8.5em; }
figure { display: inline-block; margin: 1em; max-width: 100%; } figure img { max-width: 100%; border: 1px solid #ddd; }
"""


def _html_table(head: Sequence[str], rows: Sequence[tuple[str, list[str]]]) -> list[str]:
    """A results table inside its own horizontally scrolling box (wide tables never widen the page)."""
    esc = html.escape
    out = ['<div class="table-wrap"><table class="results">']
    out.append("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead>")
    out.append("<tbody>")
    out.extend(f'<tr class="{css}">' + "".join(cells) + "</tr>" for css, cells in rows)
    out.append("</tbody></table></div>")
    return out


def _html_figure(figure: RenderedFigure) -> str:
    esc = html.escape
    data = base64.b64encode(figure.png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{esc(figure.title)}">'
        f"<figcaption>{esc(figure.title)}</figcaption></figure>"
    )


def render_html(report: Report, figures: Sequence[RenderedFigure] = ()) -> str:
    """One self-contained HTML page: tables, protocol, studies, notes and the plots embedded as base64 PNG."""
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>dmlbench report</title><style>" + _CSS + "</style></head>",
        "<body>",
        "<h1>dmlbench report</h1>",
    ]
    for table in report.tables:
        out.append(f'<section id="{esc("dataset-" + table.dataset)}">')
        out.append(f"<h2>{esc(table.dataset)}</h2>")
        out.append('<dl class="protocol">')
        out.extend(f"<dt>{esc(label)}</dt><dd>{esc(text)}</dd>" for label, text in protocol_items(table))
        out.append("</dl>")
        rows = []
        for row in table.rows:
            cells = [f"<td>{esc(t)}</td>" for t in key_texts(table, row)]
            cells.append(f'<td class="num">{"" if row.n is None else row.n}</td>')
            for metric in table.metrics:
                cell = row.cells[metric]
                css = "num" + (" best" if cell.best else "") + (" flagged" if cell.flagged else "")
                cells.append(f'<td class="{css}">{esc(cell_text(cell, row, intervals=report.show_intervals))}</td>')
            rows.append((row.kind, cells))
        out += _html_table(header(table), rows)
        out.extend(_html_figure(f) for f in figures if f.study is None and f.dataset == table.dataset)
        out.append("</section>")
    if report.studies:
        out.append('<section id="studies"><h2>Tuning studies</h2>')
        study_rows = [("study", [f"<td>{esc(c)}</td>" for c in study_cells(s)]) for s in report.studies]
        out += _html_table(STUDY_HEADER, study_rows)
        out.extend(_html_figure(f) for s in report.studies for f in figures if f.study == s.name)
        out.append("</section>")
    out.append('<section id="notes"><h2>Notes</h2><ul>')
    out.extend(f"<li>{esc(line)}</li>" for line in notes(report))
    out.append("</ul></section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
