"""Issue 24 for `tune`: bounded budgets and workers, spaces checked value by value before the study exists,
damaged journals refused with a way out, and `--storage ''` read as "not given"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dmlbench.errors import ConfigError

runner = CliRunner()


def _tune(tmp_path: Path, digits_root: Path, *extra: str) -> Any:
    from dmlbench.cli import app

    args = ["tune", "--loss", "triplet", "--dataset", "digits", "--trials", "2", "--folds", "1", "--epochs", "1"]
    args += ["--runs-root", str(tmp_path / "runs"), "--data-root", str(digits_root), "--device", "cpu", *extra]
    return runner.invoke(app, args)


def _one_error(result: Any) -> tuple[str, str]:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 2 and lines[0].startswith("error:") and lines[1].startswith("hint:"), result.output
    assert "Traceback" not in result.output
    return lines[0], lines[1]


SPACES = {
    "inf bound": ("[optim.small]\nlr = { low = 1e-4, high = inf }\n[loss.triplet]\n", "finite"),
    "nan bound": ("[optim.small]\nlr = { low = nan, high = 1e-2 }\n[loss.triplet]\n", "finite"),
    "-inf integer": ("[sampler]\nsamples_per_class = { low = -inf, high = 4, integer = true }\n", "finite"),
    "choice no loss takes": (
        "[loss.triplet]\nsquared = { choices = [true, 'yes'] }\n",
        "loss.squared = 'yes' cannot be used",
    ),
    "momentum below zero": (
        "[optim.small]\nmomentum = { low = -1.0, high = 0.9 }\n[loss.triplet]\n",
        "optim.momentum = -1.0 cannot be used",
    ),
    "negative lr in a linear range": (
        "[optim.small]\nlr = { low = -0.1, high = 0.1 }\n[loss.triplet]\n",
        "optim.lr = -0.1 cannot be used",
    ),
}


@pytest.mark.parametrize("space", SPACES.values(), ids=SPACES.keys())
def test_a_space_no_trial_can_use_is_refused_before_the_study_exists(
    space: tuple[str, str], digits_root: Path, tmp_path: Path
) -> None:
    text, message = space
    bad = tmp_path / "bad.toml"
    bad.write_text(text, encoding="utf-8")
    result = _tune(tmp_path, digits_root, "--space", str(bad))
    assert result.exit_code == 2, result.output
    error, _ = _one_error(result)
    assert message in error
    assert not (tmp_path / "runs").exists(), "nothing written: no journal, no study"


def test_the_corrected_space_is_then_accepted_as_a_new_study(small: Any, tmp_path: Path) -> None:
    from dmlbench.tuning.plan import make_plan
    from dmlbench.tuning.worker import open_study

    space = tmp_path / "space.toml"
    space.write_text("[loss.triplet]\nsquared = { choices = [true, 'yes'] }\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot be used"):
        make_plan(small(space_file=space))
    space.write_text("[loss.triplet]\nsquared = { choices = [true, false] }\n", encoding="utf-8")
    study = open_study(make_plan(small(space_file=space)), create=True)  # no "space differ"
    assert study.user_attrs["dmlbench"]["space"]["loss.squared"] == "one of True, False"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("miner = { choices = ['BatchHardMiner', 'NoSuchMiner'] }", "miner = 'NoSuchMiner' cannot be used"),
        ("lr_multiplier = { low = -1.0, high = 10.0 }", "lr_multiplier = -1.0 cannot be used"),
    ],
)
def test_a_pml_value_no_trial_can_use_is_refused_before_the_study(
    line: str, message: str, small: Any, tmp_path: Path
) -> None:
    from dmlbench.tuning.plan import make_plan

    space = tmp_path / "space.toml"
    space.write_text(f"[loss.'pml:TripletMarginLoss']\n{line}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        make_plan(small(loss="pml:TripletMarginLoss", space_file=space))
    assert not (tmp_path / "runs").exists()


BOUNDS = [
    (["--seed", str(2**31)], "--seed"),
    (["--seed", "99999999999999999999"], "--seed"),
    (["--trials", "100000000"], "--trials"),
    (["--final-seeds", "100000"], "--final-seeds"),
    (["--epochs", "99999999999"], "--epochs"),
    (["--folds", "100000"], "--folds"),
    (["--workers", "100000"], "--workers"),
    (["--startup-trials", "99999999999"], "--startup-trials"),
    (["--timeout", "nan"], "--timeout"),
    (["--launcher", "bogus"], "launcher"),
]


@pytest.mark.parametrize(("extra", "flag"), BOUNDS, ids=[" ".join(e) for e, _ in BOUNDS])
def test_numeric_flags_are_bounded_where_parsed(extra: list[str], flag: str, digits_root: Path, tmp_path: Path) -> None:
    result = _tune(tmp_path, digits_root, *extra)
    assert result.exit_code == 2, result.output
    error, hint = _one_error(result)
    assert flag in error and hint.strip() != "hint:"
    assert not (tmp_path / "runs").exists()


def test_never_more_workers_than_trials_left(small: Any) -> None:
    from dmlbench.tuning.core import worker_count
    from dmlbench.tuning.plan import make_plan
    from dmlbench.tuning.worker import open_study

    plan = make_plan(small(trials=1, workers=8))
    study = open_study(plan, create=True)
    assert worker_count(plan, study) == 1
    plan = make_plan(small(trials=3, workers=8))
    assert worker_count(plan, study) == 3
    trial = study.ask()
    study.tell(trial, 0.5)
    assert worker_count(plan, study) == 2
    plan = make_plan(small(trials=3, workers=1))
    assert worker_count(plan, study) == 1


def test_empty_storage_means_the_default_journal(small: Any, tmp_path: Path) -> None:
    from dmlbench.tuning.plan import make_plan

    for empty in ("", "  "):
        plan = make_plan(small(storage=empty))
        assert plan.options.storage is None
        assert plan.storage == str(tmp_path / "runs" / "studies.journal")


def _study_journal(small: Any) -> Path:
    from dmlbench.tuning.plan import make_plan
    from dmlbench.tuning.worker import open_study

    plan = make_plan(small())
    open_study(plan, create=True)
    return Path(plan.storage)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (b'{"op_code": 5, "worker_id": "x", "study_id": 0, "da', "torn line"),  # a worker killed mid-write
        (b"\x00\x00garbage\n", "garbage line"),
        (b"\xff\xfe not utf-8\n", "garbage line"),
        (b"[1, 2]\n", "garbage line"),  # JSON, but not a journal record
    ],
)
def test_a_damaged_journal_is_refused_never_appended_to_and_recoverable(
    damage: bytes, message: str, small: Any
) -> None:
    from dmlbench.tuning.plan import make_plan
    from dmlbench.tuning.worker import open_study

    journal = _study_journal(small)
    intact = journal.read_bytes()
    journal.write_bytes(intact + damage)
    with pytest.raises(ConfigError, match=message) as info:
        open_study(make_plan(small()), create=True)
    assert str(journal) in info.value.message
    assert f"truncate -s {len(intact)} {journal}" in (info.value.hint or "")
    assert journal.read_bytes() == intact + damage, "nothing appended after the damaged line"
    # The hint's recovery works: cut at the named byte, and the study continues.
    with journal.open("r+b") as handle:
        handle.truncate(len(intact))
    assert open_study(make_plan(small()), create=True).study_name == "digits-triplet"


def test_a_garbage_journal_line_is_one_error_for_tune_and_report(small: Any, digits_root: Path, tmp_path: Path) -> None:
    journal = _study_journal(small)
    journal.write_bytes(journal.read_bytes() + b"{broken\n" + b'{"op_code": 0}\n')
    result = _tune(tmp_path, digits_root)
    assert result.exit_code == 2
    error, hint = _one_error(result)
    assert "garbage line" in error and "truncate" in hint
    from dmlbench.reporting.studies import load_studies

    with pytest.raises(ConfigError, match="garbage line") as info:
        load_studies([journal], None)  # what report --studies reads, once it has runs to tabulate
    assert "truncate" in (info.value.hint or "")


def test_report_reads_past_a_torn_last_line_as_optuna_does(small: Any) -> None:
    """A reader takes no lock: a last line being written now looks torn, and is not an error for report."""
    from dmlbench.tuning.storage import check_journal

    journal = _study_journal(small)
    journal.write_bytes(journal.read_bytes() + b'{"op_code": 5, "worker')
    check_journal(journal, writing=False)
    with pytest.raises(ConfigError, match="torn line"):
        check_journal(journal, writing=True)


@pytest.mark.parametrize("spec", ["{tmp}/fifo", "{tmp}"])
def test_a_storage_that_is_not_a_file_says_what_it_is(spec: str, tmp_path: Path) -> None:
    import os

    from dmlbench.tuning.storage import open_storage

    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ConfigError, match="FIFO|folder"):
        open_storage(spec.format(tmp=tmp_path))


def test_a_libpq_connection_string_is_not_taken_for_a_journal_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dmlbench.tuning.storage import open_storage

    monkeypatch.chdir(tmp_path)  # a journal named after the string would be created here
    with pytest.raises(ConfigError, match="libpq connection string") as info:
        open_storage("host=localhost dbname=x password=hunter22")
    assert "hunter22" not in info.value.message
    assert not any(tmp_path.iterdir())
