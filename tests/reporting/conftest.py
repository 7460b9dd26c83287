"""Shared fixtures for the reporting tests: the hand-made run folders and golden-file comparison."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
GOLDEN = HERE / "golden"


@pytest.fixture
def fixture_runs(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fixture runs root as a relative path (`run-folders`), so reports never contain machine paths."""
    monkeypatch.chdir(FIXTURES)
    return Path("run-folders")


@pytest.fixture
def runs_copy(tmp_path: Path) -> Path:
    """A writable copy of the fixture runs, for tests that damage them."""
    target = tmp_path / "runs"
    shutil.copytree(FIXTURES / "run-folders", target)
    return target


@pytest.fixture
def golden() -> Callable[[str, str], None]:
    """Compare text with tests/reporting/golden/<name>; DMLBENCH_UPDATE_GOLDEN=1 rewrites the file."""

    def check(name: str, text: str) -> None:
        path = GOLDEN / name
        if os.environ.get("DMLBENCH_UPDATE_GOLDEN") == "1":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        assert path.is_file(), f"missing golden file {path} (run with DMLBENCH_UPDATE_GOLDEN=1 to create it)"
        expected = path.read_text(encoding="utf-8")
        assert text == expected, f"{name} differs from the golden file (DMLBENCH_UPDATE_GOLDEN=1 to accept)"

    return check
