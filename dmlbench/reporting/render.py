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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dmlbench.registry import Registry
from dmlbench.reporting.tables import Cell, DatasetTable, Report, Row, metric_label, metric_sort_key

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


@dataclass(frozen=True)
class RenderedFigure:
    """A plot as PNG bytes, for formats that embed figures (html)."""

    dataset: str
    name: str
    title: str
    png: bytes


def _number(value: float, *, signed: bool = False) -> str:
    if abs(value) < 0.005:  # never print "-0.00"
        value = 0.0
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def cell_text(cell: Cell, row: Row, *, plus_minus: str = " ± ", dagger: str = DAGGER) -> str:
    """A value as the paper prints it: percent with two decimals, ± std, a dagger when unverified."""
    if cell.mean is None:
        return "-"
    text = _number(cell.mean, signed=row.kind == "difference")
    if row.kind == "reproduced" and cell.std is not None:
        text += f"{plus_minus}{cell.std:.2f}"
    if row.kind == "reproduced" and row.n is not None and cell.count < row.n:
        text += f" (n={cell.count})"
    if cell.unverified:
        text += dagger
    return text


def key_texts(table: DatasetTable, row: Row) -> list[str]:
    """The grouping cells of a row; paper and difference rows say what they are in the loss column."""
    texts = []
    for column in table.group_by:
        value = row.keys.get(column, "")
        if row.kind == "difference":
            value = "Δ vs paper" if column == "loss" else ""
        elif row.kind == "paper" and column == "loss":
            value = f"{value} (paper)"
        texts.append(value)
    return texts


def header(table: DatasetTable) -> list[str]:
    """Column titles: grouping columns, n, then metrics in paper style (NMI, R@1, ...)."""
    return [KEY_LABELS[c] for c in table.group_by] + ["n"] + [metric_label(m) for m in table.metrics]


def notes(report: Report) -> list[str]:
    """Footnotes shared by every format (plain text)."""
    lines = [
        "Values are percentages: mean ± sample standard deviation over the n seeds of a group (no ± when n = 1). "
        "The best reproduced value per column is marked (every metric is higher-is-better)."
    ]
    if report.paper_citation:
        lines.append(
            f"Paper rows: {report.paper_citation}. {report.paper_verification}. "
            "Δ = reproduced − paper, in percentage points."
        )
    if report.has_unverified:
        lines.append(f"{DAGGER} Not verified against the paper (recalled value; see docs/losses.md §7).")
    if report.partial:
        missing = ", ".join(f"{run} ({metric})" for run, metric in report.partial)
        lines.append(f"(n=k): the cell averages only the k runs that report the metric; missing: {missing}.")
    for run_id, reason in report.excluded:
        lines.append(f"Left out: {run_id}: {reason}.")
    return lines


def protocol_items(table: DatasetTable) -> list[tuple[str, str]]:
    """(label, text) pairs stating the split, backbone, embedding size, batch and retrieval protocol."""
    return [(label, table.protocol[key]) for key, label in PROTOCOL_LABELS if key in table.protocol]


# ---------------------------------------------------------------- markdown


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(report: Report, figures: Sequence[RenderedFigure] = ()) -> str:
    """GitHub-flavoured markdown: per dataset a heading, the protocol and a pipe table; notes at the end."""
    out: list[str] = []
    for table in report.tables:
        out.append(f"## {table.dataset}")
        out.append("")
        out.append("Protocol: " + "; ".join(f"**{label}** {_md_escape(text)}" for label, text in protocol_items(table)))
        out.append("")
        head = header(table)
        body = []
        for row in table.rows:
            cells = [_md_escape(t) for t in key_texts(table, row)]
            cells.append("" if row.n is None else str(row.n))
            for metric in table.metrics:
                cell = row.cells[metric]
                text = _md_escape(cell_text(cell, row))
                cells.append(f"**{text}**" if cell.best else text)
            body.append(cells)
        widths = [max(3, *(len(r[i]) for r in [head, *body])) for i in range(len(head))]
        numeric = [False] * len(table.group_by) + [True] * (1 + len(table.metrics))
        out.append("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |")
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
        out.append("")
    out.append("Notes:")
    out.append("")
    out.extend(f"- {_md_escape(line)}" for line in notes(report))
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- csv


def render_csv(report: Report, figures: Sequence[RenderedFigure] = ()) -> str:
    """One flat table over every dataset: a row per reproduced group, paper row and difference (percent)."""
    group_columns = sorted({c for t in report.tables for c in t.group_by}, key=list(KEY_LABELS).index)
    metrics = sorted({m for t in report.tables for m in t.metrics}, key=metric_sort_key)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["dataset", "row", *group_columns, "n"]
        + [f"{m}{suffix}" for m in metrics for suffix in ("", "_std")]
        + ["unverified", "runs"]
    )
    for table in report.tables:
        for row in table.rows:
            values: list[str] = []
            for metric in metrics:
                cell = row.cells.get(metric)
                values.append("" if cell is None or cell.mean is None else f"{cell.mean:.4f}")
                values.append("" if cell is None or cell.std is None else f"{cell.std:.4f}")
            unverified = ";".join(m for m in metrics if (c := row.cells.get(m)) is not None and c.unverified)
            keys = [row.keys.get(c, "") for c in group_columns]
            writer.writerow(
                [
                    table.dataset,
                    row.kind,
                    *keys,
                    "" if row.n is None else row.n,
                    *values,
                    unverified,
                    ";".join(row.runs),
                ]
            )
    return buffer.getvalue()


# ---------------------------------------------------------------- json


def _json_cell(cell: Cell) -> dict[str, object]:
    return {
        "mean": None if cell.mean is None else round(cell.mean, 4),
        "std": None if cell.std is None else round(cell.std, 4),
        "count": cell.count,
        "best": cell.best,
        "unverified": cell.unverified,
    }


def render_json(report: Report, figures: Sequence[RenderedFigure] = ()) -> str:
    """Machine-readable report: tables with protocol, rows with per-metric mean/std/count, exclusions."""
    payload = {
        "schema_version": 1,
        "unit": "percent",
        "datasets": [
            {
                "dataset": table.dataset,
                "protocol": table.protocol,
                "group_by": list(table.group_by),
                "metrics": list(table.metrics),
                "rows": [
                    {
                        "kind": row.kind,
                        "keys": row.keys,
                        "n": row.n,
                        "runs": list(row.runs),
                        "values": {m: _json_cell(row.cells[m]) for m in table.metrics},
                    }
                    for row in table.rows
                ],
            }
            for table in report.tables
        ],
        "excluded": [{"run_id": run_id, "reason": reason} for run_id, reason in report.excluded],
        "partial": [{"run_id": run_id, "metric": metric} for run_id, metric in report.partial],
        "paper": {"citation": report.paper_citation, "verification": report.paper_verification},
        "notes": notes(report),
    }
    return json.dumps(payload, indent=2, ensure_ascii=False) + "\n"


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
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "×": r"$\times$",
    "−": "-",
    DAGGER: r"\textsuperscript{\dag}",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials and map the report's symbols to math mode."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def render_latex(report: Report, figures: Sequence[RenderedFigure] = ()) -> str:
    """A booktabs `table` per dataset (needs \\usepackage{booktabs}); best values in bold."""
    out: list[str] = []
    for table in report.tables:
        caption = f"{table.dataset}. " + "; ".join(f"{label}: {text}" for label, text in protocol_items(table)) + "."
        spec = "l" * len(table.group_by) + "r" * (1 + len(table.metrics))
        out += [r"\begin{table}[ht]", r"\centering", r"\caption{" + latex_escape(caption) + "}"]
        out += [r"\label{tab:dmlbench-" + latex_escape(table.dataset) + "}"]
        out += [r"\begin{tabular}{" + spec + "}", r"\toprule"]
        out.append(" & ".join(latex_escape(h) for h in header(table)) + r" \\")
        out.append(r"\midrule")
        for row in table.rows:
            cells = [latex_escape(t) for t in key_texts(table, row)]
            cells.append("" if row.n is None else str(row.n))
            for metric in table.metrics:
                cell = row.cells[metric]
                text = latex_escape(cell_text(cell, row))
                cells.append(r"\textbf{" + text + "}" if cell.best else text)
            out.append(" & ".join(cells) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    out.append(r"\begin{itemize}")
    out.extend(r"\item " + latex_escape(line) for line in notes(report))
    out.append(r"\end{itemize}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- html

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em; color: #1b1b1b; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table.results { border-collapse: collapse; margin: 1em 0; font-size: 0.95em; }
table.results th, table.results td { border: 1px solid #bbb; padding: 0.3em 0.7em; }
table.results th { background: #e8eef7; }
table.results td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.paper td { color: #555; font-style: italic; } tr.difference td { color: #555; background: #f7f7f7; }
td.best { font-weight: bold; background: #e6f4e6; }
dl.protocol dt { font-weight: bold; float: left; clear: left; width: 8em; } dl.protocol dd { margin-left: 8.5em; }
figure { display: inline-block; margin: 1em; } figure img { max-width: 100%; border: 1px solid #ddd; }
"""


def render_html(report: Report, figures: Sequence[RenderedFigure] = ()) -> str:
    """One self-contained HTML page: tables, protocol, notes and the plots embedded as base64 PNG."""
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8"><title>dmlbench report</title><style>' + _CSS + "</style></head>",
        "<body>",
        "<h1>dmlbench report</h1>",
    ]
    for table in report.tables:
        out.append(f'<section id="{esc(table.dataset)}">')
        out.append(f"<h2>{esc(table.dataset)}</h2>")
        out.append('<dl class="protocol">')
        out.extend(f"<dt>{esc(label)}</dt><dd>{esc(text)}</dd>" for label, text in protocol_items(table))
        out.append("</dl>")
        out.append('<table class="results">')
        out.append("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header(table)) + "</tr></thead>")
        out.append("<tbody>")
        for row in table.rows:
            cells = [f"<td>{esc(t)}</td>" for t in key_texts(table, row)]
            cells.append(f'<td class="num">{"" if row.n is None else row.n}</td>')
            for metric in table.metrics:
                cell = row.cells[metric]
                css = "num best" if cell.best else "num"
                cells.append(f'<td class="{css}">{esc(cell_text(cell, row))}</td>')
            out.append(f'<tr class="{row.kind}">' + "".join(cells) + "</tr>")
        out.append("</tbody></table>")
        for figure in figures:
            if figure.dataset == table.dataset:
                data = base64.b64encode(figure.png).decode("ascii")
                out.append(
                    f'<figure><img src="data:image/png;base64,{data}" alt="{esc(figure.title)}">'
                    f"<figcaption>{esc(figure.title)}</figcaption></figure>"
                )
        out.append("</section>")
    out.append('<section id="notes"><h2>Notes</h2><ul>')
    out.extend(f"<li>{esc(line)}</li>" for line in notes(report))
    out.append("</ul></section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
