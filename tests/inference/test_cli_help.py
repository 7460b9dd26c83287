"""The four commands of this package are registered and answer --help without loading torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .helpers import invoke

COMMANDS = ["embed", "export", "index", "search"]


@pytest.mark.parametrize("command", COMMANDS)
def test_command_has_help(command: str) -> None:
    done = invoke(command, "--help")
    assert done.exit_code == 0 and "Usage" in done.stdout
    assert command in invoke().stdout


def test_help_does_not_import_torch_or_faiss() -> None:
    code = (
        "import sys; from dmlbench.cli import app\n"
        "try:\n    app(['search', '--help'])\nexcept SystemExit:\n    pass\n"
        "print([m for m in ('torch', 'faiss', 'onnx') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
