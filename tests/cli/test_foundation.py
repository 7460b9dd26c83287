"""The CLI skeleton: help, version, env, error rendering and a torch-free import."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

import dmlbench
from dmlbench.cli import app
from dmlbench.cli._output import friendly_errors
from dmlbench.errors import ChecksumError, DmlbenchError, UsageError

runner = CliRunner()

COMMANDS = ["prepare", "train", "evaluate", "report", "bench", "env"]


def test_version_prints_package_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"dmlbench {dmlbench.__version__}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.stdout


def test_no_arguments_shows_help_with_every_command() -> None:
    result = runner.invoke(app, [])
    for command in COMMANDS:
        assert command in result.stdout


def test_importing_the_cli_does_not_import_heavy_packages() -> None:
    code = (
        "import sys, dmlbench.cli; "
        "heavy = [m for m in ('torch', 'faiss', 'pandas', 'sklearn') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    heavy = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert heavy == ""


def test_env_reports_versions_and_data_root(tmp_path: object) -> None:
    result = runner.invoke(app, ["env", "--data-root", "/some/where"])
    assert result.exit_code == 0, result.output
    assert "torch" in result.stdout
    assert "/some/where" in result.stdout


@pytest.mark.parametrize(("error", "code"), [(UsageError("bad", hint="fix it"), 2), (ChecksumError("sum"), 4)])
def test_friendly_errors_map_to_exit_codes(error: DmlbenchError, code: int, capsys: pytest.CaptureFixture[str]) -> None:
    @friendly_errors
    def failing() -> None:
        raise error

    with pytest.raises(typer.Exit) as exit_info:
        failing()
    assert exit_info.value.exit_code == code
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"error: {error.message}" in captured.err
    if error.hint:
        assert f"hint: {error.hint}" in captured.err
