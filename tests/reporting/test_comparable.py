"""Only comparable runs are seeds of one row; one run reached through several paths counts once."""

from __future__ import annotations

import json
import os
from pathlib import Path

from report_runs import make_run, seeds

from dmlbench.reporting import report

R = [{"recall@1": 0.80, "nmi": 0.60}, {"recall@1": 0.82, "nmi": 0.61}, {"recall@1": 0.81, "nmi": 0.63}]


def rows(root: Path | list[Path]) -> list[dict[str, object]]:
    data = json.loads(report(root if isinstance(root, list) else [root], fmt="json"))
    return [row for table in data["datasets"] for row in table["rows"]]


def test_different_learning_rates_are_two_rows(tmp_path: Path) -> None:
    seeds(tmp_path, "lr3", R[:2], overrides=["optim.lr=0.001"])
    seeds(tmp_path, "lr4", R[1:], overrides=["optim.lr=0.0001"])
    found = rows(tmp_path)
    assert [(row["n"], row["config"]) for row in found] == [
        (2, {"optim.lr": "0.0001"}),
        (2, {"optim.lr": "0.001"}),
    ]
    markdown = report([tmp_path], fmt="markdown")
    table = [line for line in markdown.splitlines() if line.startswith("| clustering")]
    assert len(table) == 2
    assert "optim.lr=0.001 " in table[1] and "optim.lr=0.0001 " in table[0]
    assert "| config" in markdown


def test_different_epochs_are_not_seeds_of_one_row(tmp_path: Path) -> None:
    make_run(tmp_path, "short", R[0], overrides=["schedule.epochs=1"])
    make_run(tmp_path, "long", R[1], seed=1, overrides=["schedule.epochs=10"])
    found = rows(tmp_path)
    assert sorted(json.dumps(row["config"]) for row in found) == [
        '{"schedule.epochs": "1"}',
        '{"schedule.epochs": "10"}',
    ]
    assert all(row["n"] == 1 for row in found)
    assert all(value["std"] is None and value["ci95"] is None for row in found for value in row["values"].values())


def test_seeds_of_one_config_are_one_row_without_a_config_column(tmp_path: Path) -> None:
    seeds(tmp_path, "same", R)
    (row,) = rows(tmp_path)
    assert row["n"] == 3 and row["config"] == {}
    assert "| config" not in report([tmp_path], fmt="markdown")


def test_one_run_reached_through_two_paths_counts_once(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run = make_run(runs, "digits-clustering-seed0", R[0])
    link = tmp_path / "link"
    link.symlink_to(run.root, target_is_directory=True)
    root_link = tmp_path / "runs-link"
    root_link.symlink_to(runs, target_is_directory=True)
    (runs / "x").mkdir()
    dotted = Path(str(runs) + os.sep + ".." + os.sep + "runs")
    through_parent = runs / "x" / ".." / run.run_id
    for paths in ([runs, link], [run.root, run.root], [dotted, runs], [root_link, runs], [through_parent, run.root]):
        (row,) = rows(list(paths))
        assert row["n"] == 1, paths
        assert row["runs"] == ["digits-clustering-seed0"]


def test_a_symlinked_run_inside_a_root_is_not_a_second_seed(tmp_path: Path) -> None:
    run = make_run(tmp_path / "runs", "digits-clustering-seed0", R[0])
    (tmp_path / "runs" / "copy").symlink_to(run.root, target_is_directory=True)
    (row,) = rows(tmp_path / "runs")
    assert row["n"] == 1
