"""Shared fixtures for the training tests: one prepared `digits` for the whole session."""

from __future__ import annotations

import pytest


@pytest.fixture()
def one_thread() -> object:
    """Bit-exact comparisons run single-threaded, like the subprocesses they are compared with."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield None
    torch.set_num_threads(before)
