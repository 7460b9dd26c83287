"""`BenchOptions`: one validated value that the bench plan and runner both read."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmlbench.benchmark import BenchOptions, make_plan
from dmlbench.errors import ConfigError, UsageError
from dmlbench.paths import Places


def places(tmp_path: Path) -> Places:
    return Places.of(tmp_path / "data", tmp_path / "runs")


@pytest.mark.parametrize(
    ("values", "error", "words"),
    [
        ({"tune_trials": 0}, ConfigError, "^tune_trials: "),
        ({"final_seeds": 0}, ConfigError, "^final_seeds: "),
        ({"folds": 0}, ConfigError, "^folds: "),
        ({"timeout": float("nan")}, ConfigError, "^timeout: "),
        ({"launcher": "slrum"}, ConfigError, "^launcher: "),
        ({"seeds": 0}, UsageError, "--seeds must be between 1 and"),
        ({"seeds": (-1, 2)}, UsageError, "seeds must be at most"),
        ({"workers": 0}, UsageError, "--workers must be at least 1"),
        ({"dataset": "digits"}, ConfigError, "^dataset: not an option of BenchOptions"),  # no silent default
    ],
)
def test_a_bad_option_is_one_error_naming_its_field(
    values: dict[str, object], error: type[Exception], words: str, tmp_path: Path
) -> None:
    with pytest.raises(error, match=words):
        BenchOptions.build(places=places(tmp_path), **values)


def test_final_seeds_default_to_the_seed_count(tmp_path: Path) -> None:
    assert BenchOptions(places=places(tmp_path), seeds=(0, 5)).final_seed_count == 2
    assert BenchOptions(places=places(tmp_path), seeds=3, final_seeds=1).final_seed_count == 1
    assert BenchOptions(places=places(tmp_path), seeds=[4, 2, 4]).seed_values == [2, 4]  # type: ignore[arg-type]


def test_the_plan_reads_the_options_places(tmp_path: Path) -> None:
    where = places(tmp_path)
    options = BenchOptions(places=where, datasets=("digits",), losses=("triplet", "clustering"), seeds=2, epochs=1)
    plan = make_plan(options)
    assert [(run.loss, run.seed) for run in plan.runs] == [
        ("triplet", 0),
        ("triplet", 1),
        ("clustering", 0),
        ("clustering", 1),
    ]
    assert {run.run_dir.parent for run in plan.runs} == {where.runs_root}
    assert {task.places for task in plan.tasks} == {where}
    assert {run.resolved.schedule.epochs for run in plan.runs} == {1}
    assert sorted(b.baseline for b in plan.baselines) == ["raw", "untrained"]
    assert not make_plan(options.model_copy(update={"baselines": False})).baselines
    assert not (tmp_path / "runs").exists()  # a plan writes nothing


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--tune-trials", "200000"], "--tune-trials"),
        (["--final-seeds", "5000", "--tune-trials", "2"], "--final-seeds"),
    ],
)
def test_the_command_names_the_flag_the_core_knows_as_a_field(args: list[str], flag: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dmlbench.cli import app

    result = CliRunner().invoke(app, ["bench", "--runs-root", str(tmp_path / "runs"), *args])
    assert result.exit_code == 2
    # typer checks only the lower bounds; the upper ones are the options object's, refused by field name
    assert f"error: {flag}: Input should be less than or equal to" in result.stderr
    assert not (tmp_path / "runs").exists()
