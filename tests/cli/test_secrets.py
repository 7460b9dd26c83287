"""Storage passwords never reach stdout, stderr or a file, in any spelling SQLAlchemy or libpq accepts.

Every command that takes `--storage` (tune, report --studies / --storage) is fed each form; `bench` and
`status` take no storage (bench --tune-trials uses the runs root's journal), which the last test pins.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dmlbench.cli import app
from dmlbench.utils.redact import redact

runner = CliRunner()
SECRET = "S3cr3tPW"

# Each form holds SECRET (or a password made of it) where that form puts a password.
FORMS = {
    "userinfo": f"postgresql://user:{SECRET}@127.0.0.1:1/db",
    "userinfo with / and @": f"postgresql://user:{SECRET}/x@y@127.0.0.1:1/db",
    "userinfo with spaces and colon": f"postgresql://user:{SECRET} a:b@127.0.0.1:1/db",
    "no user name": f"postgresql://:{SECRET}@127.0.0.1:1/db",
    "query password": f"postgresql://user@127.0.0.1:1/db?sslmode=disable&password={SECRET}",
    "query password, encoded key": f"postgresql://user@127.0.0.1:1/db?pass%77ord={SECRET}",
    "query sslpassword": f"postgresql://user@127.0.0.1:1/db?sslpassword={SECRET}",
    "percent-encoded password": f"postgresql://user:{SECRET}%40%2F@127.0.0.1:1/db",
    "driver scheme": f"mysql+pymysql://user:{SECRET}@127.0.0.1:1/db",
    "libpq keywords": f"host=127.0.0.1 port=1 user=u password={SECRET} dbname=db",
    "libpq quoted keyword": f"host=127.0.0.1 password = '{SECRET} x\\'y' dbname=db",
}


def _files_text(root: Path) -> str:
    texts = []
    for dirpath, dirnames, filenames in os.walk(root):
        texts += dirnames + filenames
        for name in filenames:
            texts.append((Path(dirpath) / name).read_bytes().decode("utf-8", "replace"))
    return "\n".join(texts)


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_redact_masks_every_form(form: str) -> None:
    masked = redact(form, known=[form])
    assert SECRET not in masked
    assert "***" in masked


def test_redact_keeps_what_holds_no_password() -> None:
    for text in ("sqlite:///runs/a@b.db", "postgresql://host:5432/db", "/runs/studies.journal", "dbname=x user=y"):
        assert redact(text) == text
    # Two URLs in one message: each keeps its host.
    both = redact("a postgresql://u:x1@h1/d, mysql://v:y1@h2/d")
    assert both == "a postgresql://u:***@h1/d, mysql://v:***@h2/d"


def test_known_spec_masks_its_decoded_password_anywhere() -> None:
    spec = "postgresql://u:p%40ssw0rd@h/db"
    assert redact("driver said: bad password p@ssw0rd", known=[spec]) == "driver said: bad password ***"


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
@pytest.mark.parametrize("command", ["tune", "report --studies", "report --storage"])
def test_no_command_shows_or_writes_the_password(
    command: str, form: str, digits_root: Path, a_complete_run: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)  # a storage taken for a file name would land here, and be caught below
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copytree(a_complete_run, runs / "good")  # report reads the storage only when it has runs
    if command == "tune":
        args = ["tune", "--loss", "triplet", "--dataset", "digits", "--trials", "1", "--folds", "1"]
        args += ["--runs-root", str(runs), "--data-root", str(digits_root), "--storage", form]
    elif command == "report --studies":
        args = ["report", str(runs), "--studies", "--storage", form]
    else:
        args = ["report", str(runs), "--storage", form]
    result = runner.invoke(app, args)
    assert result.exit_code in (2, 4), result.output  # the storage's error, not "no runs"
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1].startswith("hint:"), result.stderr
    shown = result.stdout + result.stderr
    for secret in (SECRET, "%40%2F"):
        assert secret not in shown, shown
    assert SECRET not in _files_text(tmp_path)


def test_a_working_storage_with_a_password_is_redacted_in_study_json_and_output(
    digits_root: Path, tmp_path: Path
) -> None:
    """SQLite ignores a `?password=`: the study runs, and the password is in no output and no file."""
    runs = tmp_path / "runs"
    runs.mkdir()
    storage = f"sqlite:///{tmp_path / 'studies.db'}?password={SECRET}"
    args = ["tune", "--loss", "triplet", "--dataset", "digits", "--trials", "1", "--folds", "1", "--epochs", "1"]
    args += ["--runs-root", str(runs), "--data-root", str(digits_root), "--storage", storage, "--quiet"]
    args += ["--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert SECRET not in result.stdout + result.stderr
    assert SECRET not in _files_text(runs)
    study_json = (runs / "tune" / "digits-triplet" / "study.json").read_text(encoding="utf-8")
    assert "password=***" in study_json
    # Only trials, no finished run to tabulate: report refuses (without the password), yet reads the study.
    report = runner.invoke(app, ["report", str(runs), "--studies", "--storage", storage])
    assert report.exit_code == 3 and "no complete DML runs" in report.stderr, report.output
    assert SECRET not in report.stdout + report.stderr
    from dmlbench.reporting.studies import load_studies

    summaries, _ = load_studies([storage], None)
    assert [(s.name, s.complete) for s in summaries] == [("digits-triplet", 1)]


@pytest.fixture(scope="module")
def a_complete_run(digits_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("complete") / "good"
    args = ["train", "--dataset", "digits", "--quiet", "--steps", "1", "--data-root", str(digits_root)]
    result = runner.invoke(app, [*args, "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    return run


@pytest.mark.parametrize("command", ["bench", "status"])
def test_commands_without_a_storage_option_refuse_one(command: str) -> None:
    result = runner.invoke(app, [command, "--storage", FORMS["userinfo"]])
    assert result.exit_code == 2
    assert SECRET not in result.stdout + result.stderr
