"""Suite-wide test setup: CPU by default; `gpu` tests skip themselves without CUDA; one prepared `digits`."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def digits_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding a prepared `digits` (bundled with scikit-learn: no download), prepared once for the
    whole suite; a test that changes a data root copies this one first."""
    from dmlbench.datasets import prepare
    from dmlbench.paths import Places

    root = tmp_path_factory.mktemp("digits-data")
    prepare("digits", Places.of(root))
    return root


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in gpu_items:
            item.add_marker(skip)
