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

from dmlbench.errors import MissingInputError
from dmlbench.reporting import report
from dmlbench.rundir import RunDir

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


def _damage_config(run: RunDir) -> None:
    run.config_path.write_text("[optim\nlr = ", encoding="utf-8")


def _binary_config(run: RunDir) -> None:
    run.config_path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")


def _string_metric(run: RunDir) -> None:
    path = run.metrics_path("test")
    record = json.loads(path.read_text(encoding="utf-8"))
    record["metrics"]["recall@1"] = "very good"
    path.write_text(json.dumps(record), encoding="utf-8")


def _unknown_status(run: RunDir) -> None:
    manifest = json.loads(run.manifest_path.read_text(encoding="utf-8"))
    manifest["status"] = "finished-ish"
    run.manifest_path.write_text(json.dumps(manifest), encoding="utf-8")


def _manifest_not_json(run: RunDir) -> None:
    run.manifest_path.write_bytes(b"\xff\xfe{")


# damage -> (how, the reason shown, whether `status` reads the damaged file: it never reads config.toml)
DAMAGES = {
    "corrupt config": (_damage_config, "config.toml is corrupt", False),
    "binary config": (_binary_config, "config.toml", False),
    "metric is a string": (_string_metric, "metrics.json is unreadable", True),
    "unknown status": (_unknown_status, "unknown status 'finished-ish'", True),
    "manifest not json": (_manifest_not_json, "manifest.json is not UTF-8", True),
}


@pytest.mark.parametrize("damage", list(DAMAGES), ids=list(DAMAGES))
def test_one_damaged_run_is_left_out_with_its_reason(damage: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dmlbench.cli import app

    spoil, reason, status_reads_it = DAMAGES[damage]
    root = tmp_path / "runs"
    make_run(root, "fine-a", GOOD)
    make_run(root, "fine-b", {"recall@1": 0.7, "nmi": 0.5}, loss="triplet")
    spoil(make_run(root, "damaged", GOOD, loss="lifted"))
    result = CliRunner().invoke(app, ["report", str(root), "--format", "json"])
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["datasets"][0]["rows"]
    assert sorted(run for row in rows for run in row["runs"]) == ["fine-a", "fine-b"]
    left_out = [line for line in result.stderr.splitlines() if line.startswith("left out damaged:")]
    assert len(left_out) == 1 and reason in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.stderr
    excluded = json.loads(result.stdout)["excluded"]
    assert [entry["run_id"] for entry in excluded] == ["damaged"] and reason in excluded[0]["reason"]
    status = CliRunner().invoke(app, ["status", str(root), "--json"])
    assert status.exit_code == 0, status.stderr
    groups = json.loads(status.stdout)
    errors = [entry for group in groups for entry in group["errors"]]
    if status_reads_it:
        assert sum(group["done"] for group in groups) == 2
        assert [entry["run"] for entry in errors] == ["damaged"] and reason in errors[0]["error"]
    else:
        assert sum(group["done"] for group in groups) == 3 and not errors


@pytest.mark.parametrize(
    "history",
    [
        b'{"step": 1, "epoch": 0, "loss": 1.5}\n\xff\xfe\x00garbage\n{"step": 2, "epoch": 0, "loss": 1.25}\n',
        b'{"step": 1, "epoch": 0, "loss": 1.5}\n{"step": 2, "ep',  # torn by a kill
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",  # not a history at all
        b'["a list"]\n"text"\n{"step": "two", "epoch": 0, "loss": 1.0}\n{"val": 3}\n',
    ],
    ids=["not utf-8 line", "torn line", "binary", "wrong shapes"],
)
def test_garbage_history_never_breaks_a_report(history: bytes, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    run = make_run(root, "a", GOOD)
    run.history_path.parent.mkdir(parents=True)
    run.history_path.write_bytes(history)
    readable = [line for line in history.split(b"\n") if line.startswith(b'{"step": ') and line.endswith(b"}")]
    assert len(run.read_history().steps) == len([line for line in readable if b'"two"' not in line])
    text = report([root], fmt="html")  # html draws the loss curves, reading the history
    assert "Traceback" not in text and "recall" in text.lower()


def test_unreadable_history_costs_only_its_curve(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    run = make_run(root, "a", GOOD)
    run.history_path.mkdir(parents=True)  # a folder where the file should be
    with pytest.raises(MissingInputError, match="history.jsonl"):
        run.read_history()
    plots = tmp_path / "plots"
    report([root], fmt="markdown", plots_dir=plots)
    assert (plots / "digits-recall.png").is_file() and not (plots / "digits-training.png").exists()


def test_forged_saved_embeddings_cost_only_the_tsne_map(tmp_path: Path) -> None:
    import io

    import numpy as np

    root = tmp_path / "runs"
    run = make_run(root, "a", GOOD)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 128)})
    run.embeddings_path("test").write_bytes(header.getvalue() + bytes(64))
    np.save(run.labels_path("test"), np.arange(10))
    plots = tmp_path / "plots"
    text = report([root], fmt="markdown", plots_dir=plots)
    assert "| R@1" in text.replace("  ", " ")
    assert (plots / "digits-recall.png").is_file() and not list(plots.glob("*tsne*"))
