"""`dmlbench report`: golden files for every format, stability, structure, exclusions and bad input."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dmlbench.errors import MissingInputError, UnknownNameError
from dmlbench.reporting import collect, report
from dmlbench.reporting.collect import split_overlap
from dmlbench.reporting.paper import load_paper_results

Golden = Callable[[str, str], None]
TEXT_FORMATS = ("markdown", "csv", "latex", "json")
EXCLUDED = ("digits-triplet-small_cnn-seed2", "digits-lifted-small_cnn-seed1", "digits-clustering-overlap-seed7")


def strip_images(html_text: str) -> str:
    """HTML with the base64 plots replaced, so the golden file pins the page but not the pixels."""
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:image/png;base64,...", html_text)


@pytest.mark.parametrize("fmt", TEXT_FORMATS)
def test_golden_formats(fmt: str, fixture_runs: Path, golden: Golden) -> None:
    text = report([fixture_runs], fmt=fmt)
    golden(f"report.{ {'markdown': 'md', 'latex': 'tex'}.get(fmt, fmt) }", text)
    assert text == report([fixture_runs], fmt=fmt), "same input must give the same bytes"


def test_golden_html(fixture_runs: Path, golden: Golden, tmp_path: Path) -> None:
    text = report([fixture_runs], fmt="html")
    assert text.count("<img ") == 7  # 3 datasets x (recall + training) + the digits t-SNE
    golden("report.html", strip_images(text))


def test_golden_filtered(fixture_runs: Path, golden: Golden) -> None:
    text = report([fixture_runs], fmt="markdown", metrics=["nmi", "R@1"], group_by=["loss", "seed"])
    golden("report-nmi-r1-by-seed.md", text)


def test_run_order_does_not_change_output(fixture_runs: Path) -> None:
    runs = sorted(p for p in fixture_runs.iterdir())
    assert report(runs, fmt="markdown") == report(list(reversed(runs)), fmt="markdown")
    assert report(runs, fmt="markdown") == report([fixture_runs], fmt="markdown")


def markdown_tables(text: str) -> list[list[list[str]]]:
    tables: list[list[list[str]]] = []
    current: list[list[str]] | None = None
    for line in text.splitlines():
        if line.startswith("|"):
            assert line.endswith("|"), line
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line[1:-1])]
            if current is None:
                current = []
                tables.append(current)
            current.append(cells)
        else:
            current = None
    return tables


def test_markdown_is_a_well_formed_table(fixture_runs: Path) -> None:
    text = report([fixture_runs], fmt="markdown", intervals=True)
    tables = markdown_tables(text)
    assert len(tables) == 3  # cub200, digits, sop
    for table in tables:
        header, separator, *body = table
        assert header[:5] == ["loss", "backbone", "dim", "batch", "n"]
        assert all(re.fullmatch(r":?-{3,}:?", cell) for cell in separator)
        assert body, "a table needs data rows"
        assert {len(row) for row in table} == {len(header)}
    digits = tables[1]
    losses = [row[0] for row in digits[2:]]
    assert losses == ["triplet", "lifted", "npairs", "clustering"]  # the paper's order, ours last
    header = digits[0]
    assert header[5:10] == ["NMI", "R@1", "R@2", "R@4", "R@8"]


def test_aggregation_and_best_marking(fixture_runs: Path) -> None:
    rows = {r[0]: r for r in markdown_tables(report([fixture_runs], fmt="markdown", intervals=True))[1][2:]}
    clustering_r1 = [
        json.loads((fixture_runs / f"digits-clustering-small_cnn-seed{s}/eval/test/metrics.json").read_text())[
            "metrics"
        ]["recall@1"]
        for s in range(3)
    ]
    mean = sum(clustering_r1) / 3 * 100
    std = (sum((v * 100 - mean) ** 2 for v in clustering_r1) / 2) ** 0.5
    # Student t (2 degrees of freedom, 97.5% quantile) on the logit scale, mapped back
    logits = [math.log(v / (1 - v)) for v in clustering_r1]
    centre = sum(logits) / 3
    spread = (sum((x - centre) ** 2 for x in logits) / 2) ** 0.5
    half = 4.302652729911275 * spread / 3**0.5
    low, high = (100 / (1 + math.exp(-(centre + sign * half))) for sign in (-1, 1))
    assert rows["clustering"][4] == "3"
    assert rows["clustering"][6] == f"**{mean:.2f} ± {std:.2f} [{low:.2f}, {high:.2f}]**"
    compact = {r[0]: r for r in markdown_tables(report([fixture_runs], fmt="markdown"))[1][2:]}
    assert compact["clustering"][3] == f"{mean:.2f}±{std:.2f}▲"  # constant columns sit in the protocol line
    assert rows["lifted"][4] == "1" and "±" not in rows["lifted"][6]  # one seed: no std
    assert rows["triplet"][4] == "2"  # the failed third seed is not averaged in


def test_excluded_runs_are_footnotes_not_rows(fixture_runs: Path) -> None:
    text = report([fixture_runs], fmt="markdown")
    table_text = "\n".join(line for line in text.splitlines() if line.startswith("|"))
    notes = text.split("Notes:")[1]
    for run_id in EXCLUDED:
        assert run_id not in table_text
        assert f"Left out: {run_id}" in notes
    assert "status failed (NaN loss at step 12)" in notes
    assert "status running" in notes
    assert "train and test classes overlap" in notes
    assert "digits-npairs-small_cnn-seed0 (f1)" in notes
    assert "(n=2)" in table_text  # the npairs F1 cell averages the two runs that have it


def test_paper_rows_with_difference_and_dagger(fixture_runs: Path) -> None:
    data = json.loads(report([fixture_runs], fmt="json"))
    cub = next(t for t in data["datasets"] if t["dataset"] == "cub200")
    kinds = [(row["kind"], row["keys"]["loss"]) for row in cub["rows"]]
    assert kinds == [
        ("paper", "triplet"),
        ("reproduced", "triplet"),
        ("difference", "triplet"),
        ("paper", "clustering"),
        ("reproduced", "clustering"),
        ("difference", "clustering"),
    ]
    paper, ours, diff = cub["rows"][3:6]
    assert paper["values"]["recall@1"]["mean"] == 48.18
    assert diff["values"]["recall@1"]["mean"] == pytest.approx(ours["values"]["recall@1"]["mean"] - 48.18, abs=1e-3)
    assert paper["values"]["f1"]["mean"] is None  # the paper reports no F1
    sop = next(t for t in data["datasets"] if t["dataset"] == "sop")
    sop_paper = sop["rows"][0]
    assert sop_paper["values"]["nmi"]["unverified"] is True
    assert sop_paper["values"]["recall@1"]["unverified"] is False
    assert sop_paper["values"]["recall@1000"]["mean"] is None  # not reported by the paper
    digits = next(t for t in data["datasets"] if t["dataset"] == "digits")
    assert {row["kind"] for row in digits["rows"]} == {"reproduced"}
    markdown = report([fixture_runs], fmt="markdown")
    assert "89.48†" in markdown and "† Not verified" in markdown


def test_every_table_states_the_protocol(fixture_runs: Path) -> None:
    data = json.loads(report([fixture_runs], fmt="json"))
    digits = next(t for t in data["datasets"] if t["dataset"] == "digits")
    assert digits["protocol"]["split"] == (
        "train: classes 0-4 (5 classes, 901 images); test: classes 5-9 (5 classes, 896 images)"
    )
    assert digits["protocol"]["backbone"] == "small_cnn"
    assert digits["protocol"]["embedding_dim"] == "64"
    assert digits["protocol"]["batch"].startswith("5x16 (80 images")
    latex = report([fixture_runs], fmt="latex")
    assert latex.count(r"\caption{") == 3 and "train: classes 0-4" in latex


def test_csv_parses_with_one_row_per_table_row(fixture_runs: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(report([fixture_runs], fmt="csv"))))
    assert [r["row"] for r in rows].count("reproduced") == 4 + 2 + 1
    clustering = next(r for r in rows if r["dataset"] == "digits" and r["loss"] == "clustering")
    assert clustering["n"] == "3" and float(clustering["recall@1"]) > 0


def test_paper_results_data_file() -> None:
    paper = load_paper_results()
    assert paper.datasets() == ["cars196", "cub200", "sop"]
    assert len(paper.rows) == 12
    cars = paper.row("cars196", "clustering")
    assert cars is not None and cars.metrics["recall@8"] == 87.81 and not cars.unverified
    sop = paper.row("sop", "triplet")
    assert sop is not None and sop.unverified == frozenset(sop.metrics) and "recall@1000" not in sop.metrics


@pytest.mark.parametrize(
    ("flag", "splits", "expected"),
    [
        (True, {"train": {"label_min": 0, "label_max": 4}, "test": {"label_min": 5, "label_max": 9}}, None),
        (False, {}, "train_test_disjoint is false"),
        (None, {}, "does not record"),
        (True, {"train": {"label_min": 0, "label_max": 5}, "test": {"label_min": 5, "label_max": 9}}, "overlap"),
        # glyphs' alternating split: even ids train, odd ids test, over the same range
        (
            True,
            {
                "train": {"classes": 176, "label_min": 0, "label_max": 350},
                "test": {"classes": 175, "label_min": 1, "label_max": 349},
            },
            None,
        ),
    ],
)
def test_split_overlap(flag: object, splits: dict[str, dict[str, int]], expected: str | None) -> None:
    reason = split_overlap(flag, splits)
    assert (reason is None) if expected is None else (reason is not None and expected in reason)


def test_only_overlapping_runs_is_an_error(tmp_path: Path) -> None:
    source = Path(__file__).parent / "fixtures" / "run-folders" / "digits-clustering-overlap-seed7"
    with pytest.raises(MissingInputError, match="no complete DML runs") as info:
        report([source], fmt="markdown")
    assert info.value.hint is not None and "overlap" in info.value.hint


def test_corrupt_metrics_leaves_that_run_out(runs_copy: Path) -> None:
    (runs_copy / "digits-npairs-small_cnn-seed1" / "eval" / "test" / "metrics.json").write_text('{"metrics": {')
    found = {run.run_id: run.excluded for run in collect([runs_copy]).runs}
    reason = found["digits-npairs-small_cnn-seed1"]
    assert reason is not None and "metrics.json is unreadable" in reason
    assert sum(why is None for why in found.values()) > 1  # the other runs are still reported
    assert "digits-npairs-small_cnn-seed1: damaged" in report([runs_copy], fmt="markdown")


def test_complete_run_without_metrics_is_left_out(runs_copy: Path) -> None:
    (runs_copy / "digits-npairs-small_cnn-seed1" / "eval" / "test" / "metrics.json").unlink()
    found = {run.run_id: run.excluded for run in collect([runs_copy]).runs}
    assert found["digits-npairs-small_cnn-seed1"] is not None
    assert "no test metrics" in found["digits-npairs-small_cnn-seed1"]


def test_unknown_metric_and_group_by(fixture_runs: Path) -> None:
    with pytest.raises(UnknownNameError) as info:
        report([fixture_runs], fmt="markdown", metrics=["recal@1"])
    assert info.value.hint is not None and "did you mean 'recall@1'" in info.value.hint
    with pytest.raises(UnknownNameError, match="cannot group by"):
        report([fixture_runs], fmt="markdown", group_by=["los"])


def test_reporting_never_imports_torch_or_faiss(tmp_path: Path) -> None:
    runs = Path(__file__).parent / "fixtures" / "run-folders"
    code = (
        "import sys\nfrom pathlib import Path\nfrom dmlbench.reporting import report\n"
        f"report([Path({str(runs)!r})], fmt='html', plots_dir=Path({str(tmp_path / 'plots')!r}))\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'faiss'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


# ---------------------------------------------------------------- CLI


def invoke(*args: str) -> tuple[int, str, str]:
    from dmlbench.cli import app

    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_cli_stdout_is_the_report_only(fixture_runs: Path) -> None:
    code, stdout, stderr = invoke("report", str(fixture_runs), "--format", "markdown")
    assert code == 0
    assert stdout == report([fixture_runs], fmt="markdown")
    assert "left out digits-triplet-small_cnn-seed2" in stderr


def test_cli_defaults_to_runs_root_and_writes_output(fixture_runs: Path, tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.tex"
    code, stdout, _ = invoke("report", "--runs-root", str(fixture_runs), "-f", "latex", "-o", str(target))
    assert code == 0 and stdout == ""
    assert target.read_text(encoding="utf-8") == report([fixture_runs], fmt="latex")
    code, stdout, _ = invoke("report", "--runs-root", str(fixture_runs), "--metrics", "nmi,recall@1", "-f", "csv")
    assert code == 0 and stdout.splitlines()[0].startswith("dataset,row,loss,backbone,embedding_dim,batch,n,nmi,")


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (("report", "{missing}"), 3, "does not exist"),
        (("report", "{empty}"), 3, "no runs found"),
        (("report", "{runs}", "--format", "mardown"), 2, "did you mean 'markdown'"),
        (("report", "{runs}", "--metrics", "nmii"), 2, "did you mean 'nmi'"),
        (("report", "{runs}", "--group-by", "seeds"), 2, "did you mean 'seed'"),
        (("report", "{corrupt}"), 3, "is unreadable"),
    ],
)
def test_cli_bad_input(args: tuple[str, ...], exit_code: int, message: str, runs_copy: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    corrupt = tmp_path / "corrupt"
    shutil.copytree(runs_copy / "digits-lifted-small_cnn-seed0", corrupt)
    (corrupt / "eval" / "test" / "metrics.json").write_text("not json")
    paths = {"missing": tmp_path / "nope", "empty": tmp_path / "empty", "runs": runs_copy, "corrupt": corrupt}
    code, stdout, stderr = invoke(*(a.format(**paths) for a in args))
    assert code == exit_code
    assert stdout == ""
    assert "error:" in stderr and "hint:" in stderr and message in stderr
    assert "Traceback" not in stderr
