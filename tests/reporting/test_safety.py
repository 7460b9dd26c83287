"""Every format is safe to open with hostile names from run folders; out-of-range values are flagged."""

from __future__ import annotations

import csv
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from report_runs import make_run

from dmlbench.reporting import report

EVIL_ID = "<script>alert(1)</script>|x&y`[l](http://e)"
EVIL_DATASET = "<b>ds</b>|a&b%c$d#e_f{g}h~i^j\\k"
GOOD = {"recall@1": 0.8, "nmi": 0.6}


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    make_run(root, "a", GOOD, dataset=EVIL_DATASET, run_id=EVIL_ID)
    make_run(root, "b", {"recall@1": 0.7, "nmi": 0.5}, dataset=EVIL_DATASET, loss="triplet", run_id="=HYPERLINK(1)")
    make_run(root, "c", {"recall@1": 0.7, "nmi": 0.5}, dataset=EVIL_DATASET, loss="lifted", run_id="+1\nline")
    failed = make_run(root, "d", GOOD, dataset=EVIL_DATASET, loss="npairs", run_id=EVIL_ID + "-failed")
    failed.set_status("failed", error="<img src=x onerror=alert(2)>\n- injected item")
    return root


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)


def test_html_escapes_names(hostile: Path) -> None:
    text = report([hostile], fmt="html")
    parser = Elements()
    parser.feed(text)
    body_tags = set(parser.tags)
    assert "script" not in body_tags and "b" not in body_tags
    assert text.count("<img ") == 0  # no plots (the dataset name is not a file name) and no injected image
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&lt;img src=x onerror=alert(2)&gt;" in text
    assert "&lt;b&gt;ds&lt;/b&gt;" in text


def test_markdown_escapes_names_and_keeps_the_table_whole(hostile: Path) -> None:
    text = report([hostile], fmt="markdown")
    assert "<script>" not in text and "<b>" not in text
    assert "## &lt;b&gt;ds&lt;/b&gt;\\|a&amp;b" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\|x&amp;y\\`\\[l\\](http://e)" in text
    assert "\n- injected item" not in text and "alert(2)&gt; - injected item" in text  # newlines never end a line
    table = [line for line in text.splitlines() if line.startswith("|")]
    widths = {len(re.split(r"(?<!\\)\|", line)) for line in table}
    assert len(widths) == 1, "an unescaped | split a row"


def test_latex_escapes_every_special(hostile: Path) -> None:
    text = report([hostile], fmt="latex")
    escaped = (
        r"\textless{}b\textgreater{}ds\textless{}/b\textgreater{}|a\&b\%c\$d\#e\_f\{g\}h\textasciitilde{}i"
        r"\textasciicircum{}j\textbackslash{}k"
    )
    assert r"\caption{" + escaped + ". " in text
    assert EVIL_DATASET not in text


def test_csv_cells_never_start_a_formula(hostile: Path) -> None:
    rows = list(csv.reader(io.StringIO(report([hostile], fmt="csv"))))
    header, body = rows[0], rows[1:]
    runs = header.index("runs")
    assert sorted(row[runs] for row in body) == ["'+1 line", "'=HYPERLINK(1)", EVIL_ID]  # the failed run: no row
    for row in body:
        for cell in row:
            assert not cell.startswith(("=", "+", "@", "\t", "\r")), cell
            assert not cell.startswith("-") or re.fullmatch(r"-\d+\.\d+", cell), cell  # negative numbers only


def test_json_keeps_names_verbatim(hostile: Path) -> None:
    data = json.loads(report([hostile], fmt="json"))
    assert data["datasets"][0]["dataset"] == EVIL_DATASET
    assert EVIL_ID in [run for row in data["datasets"][0]["rows"] for run in row["runs"]]


def test_plot_files_never_take_a_hostile_name(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    make_run(root, "a", GOOD, dataset="../../escaped")
    make_run(root, "b", GOOD, dataset="ok-name", loss="triplet")
    plots = tmp_path / "deep" / "plots"
    report([root], fmt="markdown", plots_dir=plots)
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png"))
    assert written == ["deep/plots/ok-name-recall.png"]


def test_out_of_range_and_non_finite_values_are_flagged_never_best(tmp_path: Path) -> None:
    make_run(tmp_path, "over", {"recall@1": 1.7, "nmi": 0.5}, loss="triplet")
    make_run(tmp_path, "nan", {"recall@1": 0.6, "nmi": float("nan")}, loss="lifted")
    make_run(tmp_path, "fine", {"recall@1": 0.8, "nmi": 0.4}, loss="clustering")
    data = json.loads(report([tmp_path], fmt="json"))
    values = {row["keys"]["loss"]: row["values"] for row in data["datasets"][0]["rows"]}
    assert values["triplet"]["recall@1"]["out_of_range"] is True
    assert values["triplet"]["recall@1"]["best"] is False
    assert values["clustering"]["recall@1"]["best"] is True  # 80 beats 60; the flagged 170 does not count
    assert values["lifted"]["nmi"]["mean"] is None and values["lifted"]["nmi"]["out_of_range"] is True
    assert values["triplet"]["nmi"]["best"] is True
    assert {(f["run_id"], f["metric"]) for f in data["out_of_range"]} == {("over", "recall@1"), ("nan", "nmi")}
    assert "170.00⚠" in report([tmp_path], fmt="markdown")  # the compact default table
    markdown = report([tmp_path], fmt="markdown", intervals=True)
    assert "| 170.00 ⚠ |" in markdown.replace("  ", "") or "170.00 ⚠" in markdown
    assert "**170.00" not in markdown
    assert "nan ⚠" in markdown
    assert "Outside the metric's range" in markdown and "over (recall@1 = 1.7)" in markdown
    latex = report([tmp_path], fmt="latex")
    assert r"170.00 \textsuperscript{(!)}" in latex
