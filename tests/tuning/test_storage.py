"""Storage URLs, the owner record, and stale RUNNING trials of dead workers (marked FAIL, re-asked)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dmlbench.errors import ConfigError, EnvironmentFailure
from dmlbench.tuning.storage import open_storage, owner_record, redact, staleness


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ("sqlite:////nonexistent-folder/x.db", EnvironmentFailure, "does not exist"),
        ("postgresql://user:secret@127.0.0.1:1/db", EnvironmentFailure, "cannot open --storage"),
        ("ftp://host/study", ConfigError, "unknown scheme"),
        ("/nonexistent-folder/studies.journal", EnvironmentFailure, "does not exist"),
    ],
)
def test_unopenable_storage_is_one_line(spec: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message) as info:
        open_storage(spec)
    assert "secret" not in str(info.value)
    assert "\n" not in str(info.value)


def test_storage_that_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a folder"):
        open_storage(str(tmp_path))


def test_sqlite_and_journal_open(tmp_path: Path) -> None:
    import optuna

    for spec in (f"sqlite:///{tmp_path / 's.db'}", str(tmp_path / "s.journal")):
        study = optuna.create_study(storage=open_storage(spec), study_name="x")
        study.optimize(lambda t: t.suggest_float("a", 0, 1), n_trials=1)
        assert len(study.trials) == 1


def test_redact_hides_passwords() -> None:
    assert redact("postgresql://me:pw@host/db") == "postgresql://me:***@host/db"
    assert redact("/runs/studies.journal") == "/runs/studies.journal"


def test_owner_record_of_this_process_is_alive_and_of_a_dead_one_is_stale() -> None:
    from dmlbench.tuning.storage import OWNER_ATTR

    assert not staleness({OWNER_ATTR: owner_record()}).stale
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = {**owner_record(), "pid": int(done.stdout), "started": None}
    assert staleness({OWNER_ATTR: dead}).stale
    reused = {**owner_record(), "started": "1"}  # this pid, but another process's start time
    assert staleness({OWNER_ATTR: reused}).stale
    assert staleness({}).stale


def test_a_dead_workers_running_trial_is_failed_and_re_asked(small: Any, tmp_path: Path) -> None:
    """A process asks a trial, records itself as owner, and dies: the next worker reaps and re-asks it."""
    from dmlbench.tuning.plan import make_plan
    from dmlbench.tuning.worker import counts, open_study, reap_stale

    plan = make_plan(small())
    study = open_study(plan, create=True)
    script = textwrap.dedent(
        f"""
        import os, optuna
        from dmlbench.tuning.storage import OWNER_ATTR, open_storage, owner_record
        study = optuna.load_study(study_name={plan.study!r}, storage=open_storage({plan.storage!r}))
        trial = study.ask()
        trial.suggest_float("optim.lr", 1e-4, 1e-2, log=True)
        trial.set_user_attr(OWNER_ATTR, owner_record())
        os._exit(0)  # dies like a SIGKILLed worker: no tell
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).parents[2])
    assert counts(study).running == 1
    lost = study.get_trials(deepcopy=False)[0]
    assert reap_stale(study, plan) == 1
    assert counts(study) == counts(study).__class__(complete=0, pruned=0, failed=1, running=0)
    again = study.ask()  # the enqueued retry comes first, with the lost trial's parameters
    assert again.suggest_float("optim.lr", 1e-4, 1e-2, log=True) == lost.params["optim.lr"]
    assert again.user_attrs["dmlbench_retry_of"] == lost.number
    from dmlbench.tuning.storage import OWNER_ATTR

    again.set_user_attr(OWNER_ATTR, owner_record())
    assert reap_stale(study, plan) == 0  # its owner (this process) is alive
