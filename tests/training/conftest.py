"""Shared fixtures for the training tests: one prepared `digits` for the whole session."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmlbench.paths import Places


@pytest.fixture(scope="session")
def digits_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding a prepared `digits` (bundled with scikit-learn, no download)."""
    from dmlbench.datasets import prepare

    root = tmp_path_factory.mktemp("data")
    prepare("digits", Places.of(root))
    return root


@pytest.fixture()
def one_thread() -> object:
    """Bit-exact comparisons run single-threaded, like the subprocesses they are compared with."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield None
    torch.set_num_threads(before)
