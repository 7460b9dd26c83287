"""Package layering from docs/architecture.md, checked by importing in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

import pytest


def modules_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("dmlbench", {"torch", "pandas", "faiss"}),
        ("dmlbench.cli", {"torch", "pandas", "faiss"}),
        ("dmlbench.datasets", {"torch", "faiss"}),
        ("dmlbench.reporting", {"torch", "faiss", "optuna"}),
        ("dmlbench.evaluation", {"dmlbench.training", "dmlbench.reporting"}),
        ("dmlbench.losses", {"dmlbench.datasets", "dmlbench.training", "dmlbench.evaluation", "pandas", "faiss"}),
        ("dmlbench.models", {"dmlbench.datasets", "dmlbench.training", "dmlbench.evaluation", "faiss"}),
        ("dmlbench.inference", {"torch", "faiss", "onnx", "dmlbench.training", "dmlbench.reporting"}),
        ("dmlbench.inference.index", {"onnx", "onnxruntime", "dmlbench.training", "dmlbench.reporting"}),
        ("dmlbench.inference.export", {"onnx", "onnxruntime", "dmlbench.training", "dmlbench.reporting"}),
    ],
)
def test_package_does_not_pull_in(module: str, forbidden: set[str]) -> None:
    loaded = modules_after_import(module)
    assert not (forbidden & loaded), f"importing {module} imported {sorted(forbidden & loaded)}"
