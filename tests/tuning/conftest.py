"""Shared fixtures for the tuning tests: one prepared `digits` for the session, small-study options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dmlbench.paths import Places


@pytest.fixture()
def small(digits_root: Path, tmp_path: Path) -> Any:
    """TuneOptions for a tiny digits study (1 epoch, 1 fold, CPU) under tmp_path/runs."""
    from dmlbench.tuning import TuneOptions

    def build(**changes: Any) -> TuneOptions:
        values: dict[str, Any] = {
            "loss": "triplet",
            "dataset": "digits",
            "trials": 2,
            "folds": 1,
            "epochs": 1,
            "places": Places.of(digits_root, tmp_path / "runs"),
            "device": "cpu",
        }
        values.update(changes)
        return TuneOptions.build(**values)

    return build
