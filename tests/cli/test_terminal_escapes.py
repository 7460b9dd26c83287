"""Text from files never drives the terminal: control characters in run folders, manifests and file names
reach `status`, `report` and error lines as visible escapes (`\\x1b`), never as ESC/OSC/CR sequences."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dmlbench.cli import app
from dmlbench.cli._output import printable

runner = CliRunner()
# Colour, clear screen, window title (OSC ... BEL), a C1 CSI, a carriage return that rewrites the line,
# a bidi override: each would act on a terminal.
HOSTILE = "\x1b[31m\x1b[2J\x1b]0;pwned\x07\x9b1m\rall runs complete\u202e"
RAW = ("\x1b", "\x07", "\x9b", "\r", "\u202e")


def _assert_inert(text: str) -> None:
    for char in RAW:
        assert char not in text, f"{char!r} reached the terminal: {text!r}"


def test_printable_escapes_every_control_character() -> None:
    shown = printable(HOSTILE)
    _assert_inert(shown)
    assert shown.startswith("\\x1b[31m") and "\\x0d" in shown and "\\u202e" in shown
    assert printable("a\nb") == "a\\x0ab"
    assert printable("a\tb\nc", newlines=True) == "a\tb\nc"
    assert printable("plain ünïcode") == "plain ünïcode"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("escapes")
    args = ["train", "--dataset", "digits", "--quiet", "--steps", "1", "--data-root", str(root / "data")]
    result = runner.invoke(app, [*args, "--run-dir", str(root / "runs" / "good")])
    assert result.exit_code == 0, result.output
    return root / "runs" / "good"


def _plant(trained_run: Path, tmp_path: Path) -> Path:
    """A runs root holding a copy of a real run whose manifest carries control characters."""
    runs = tmp_path / "runs"
    run = runs / "evil"
    shutil.copytree(trained_run, run)
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    manifest.update(status="failed", error=f"boom{HOSTILE}", run_id=f"evil{HOSTILE}")
    (run / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return runs


def test_status_shows_a_hostile_manifest_inertly(trained_run: Path, tmp_path: Path) -> None:
    runs = _plant(trained_run, tmp_path)
    for args in (["status", str(runs)], ["status", str(runs), "--json"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        _assert_inert(result.stdout + result.stderr)
    assert "\\u202e" in runner.invoke(app, ["status", str(runs)]).stdout  # shown, not obeyed


def test_report_shows_a_hostile_manifest_inertly(trained_run: Path, tmp_path: Path) -> None:
    runs = _plant(trained_run, tmp_path)
    shutil.copytree(trained_run, runs / "good")
    result = runner.invoke(app, ["report", str(runs)])
    _assert_inert(result.stdout + result.stderr)


def test_an_error_quoting_a_hostile_file_name_is_inert(tmp_path: Path) -> None:
    name = tmp_path / f"cfg{HOSTILE}.toml"
    result = runner.invoke(app, ["train", "--dataset", "digits", "--config", str(name)])
    assert result.exit_code == 3
    _assert_inert(result.stdout + result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 2 and lines[0].startswith("error:") and "\\x1b" in lines[0]
