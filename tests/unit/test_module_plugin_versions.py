"""registry.module_plugin_versions: which version of a `package.module:Attr` plugin a run used."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest

from dmlbench.losses.registry import LOSSES
from dmlbench.models.registry import BACKBONES
from dmlbench.registry import module_plugin_versions


def test_an_installed_package_is_recorded_by_its_distribution_and_version() -> None:
    assert module_plugin_versions([(LOSSES, "numpy.linalg:norm")]) == {
        "numpy.linalg:norm": {"module": "numpy.linalg", "distribution": "numpy", "version": np.__version__}
    }


def test_a_module_on_the_path_is_recorded_by_its_file_and_sha256(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "dmlbench_test_mylosses"
    package.mkdir()
    (package / "__init__.py").write_text("")
    module = package / "margins.py"
    module.write_text("class WideMargin:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "dmlbench_test_mylosses", raising=False)
    name = "dmlbench_test_mylosses.margins:WideMargin"
    record = module_plugin_versions([(LOSSES, name), (BACKBONES, name)])[name]
    assert record == {
        "module": "dmlbench_test_mylosses.margins",
        "file": str(module.resolve()),
        "sha256": hashlib.sha256(module.read_bytes()).hexdigest(),
    }
    sys.modules.pop("dmlbench_test_mylosses.margins", None)


def test_other_name_forms_are_not_module_plugins() -> None:
    # `pml:CircleLoss` and `timm:resnet18` are shaped like module names: their registries' schemes win
    named = [(LOSSES, "triplet"), (LOSSES, "pml:CircleLoss"), (LOSSES, "./my_loss.py:MyLoss"), (BACKBONES, "")]
    assert module_plugin_versions([*named, (BACKBONES, "timm:resnet18"), (BACKBONES, "small_cnn")]) == {}


def test_a_module_that_cannot_be_imported_is_still_named() -> None:
    assert module_plugin_versions([(LOSSES, "dmlbench_no_such_module_here:Loss")]) == {
        "dmlbench_no_such_module_here:Loss": {"module": "dmlbench_no_such_module_here"}
    }
