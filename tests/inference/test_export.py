"""`dmlbench export`: ONNX / TorchScript files that reproduce the run's embeddings without dmlbench."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dmlbench.inference.embed import load_run_model, run_dataset
from dmlbench.inference.export import PARITY_TOLERANCE, check_parity, export_run, parity_inputs
from dmlbench.paths import Places

from .helpers import invoke, make_run


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_trained_small_cnn_passes_parity_in_a_process_without_dmlbench(
    glyphs_run: Path, glyphs_root: Path, tmp_path: Path, fmt: str
) -> None:
    target = tmp_path / ("model.onnx" if fmt == "onnx" else "model.pt")
    result = export_run(load_run_model(glyphs_run, "cpu"), fmt, target, places=Places.of(glyphs_root))
    parity = result.parity
    assert parity is not None and parity.passed, parity
    assert parity.dmlbench_imported is False  # the child never imported dmlbench
    assert parity.max_abs_diff <= PARITY_TOLERANCE and parity.min_cosine > 1 - 1e-6
    assert parity.rows == 64 and parity.batch_sizes == [1, 64]  # dynamic batch: 64 at once and single rows
    # the metadata, as read back by onnxruntime / torch.jit.load in that process
    assert parity.metadata == result.metadata
    assert json.loads(parity.metadata["input_size"]) == [32, 32] and parity.metadata["channels"] == "1"
    assert json.loads(parity.metadata["mean"]) == [0.5] and parity.metadata["output_normalized"] == "true"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left behind


@pytest.mark.slow  # tracing and exporting resnet18 at 64 px costs ~30 s on a busy 2-core machine
@pytest.mark.parametrize("backbone", ["resnet18"])
def test_torchvision_backbone_passes_parity(glyphs_root: Path, tmp_path: Path, backbone: str) -> None:
    run = make_run(tmp_path, glyphs_root, backbone, image_size=64, channels=3)
    for fmt, name in (("onnx", "m.onnx"), ("torchscript", "m.pt")):
        parity = export_run(load_run_model(run, "cpu"), fmt, tmp_path / name, places=Places.of(glyphs_root)).parity
        assert parity is not None and parity.passed and not parity.dmlbench_imported, parity


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_timm_model_with_batch_standardize_head_passes_parity(glyphs_root: Path, tmp_path: Path, fmt: str) -> None:
    run = make_run(tmp_path, glyphs_root, "timm:resnet10t", image_size=32, channels=1)
    target = tmp_path / ("m.onnx" if fmt == "onnx" else "m.pt")
    parity = export_run(load_run_model(run, "cpu"), fmt, target, places=Places.of(glyphs_root)).parity
    assert parity is not None and parity.passed and not parity.dmlbench_imported, parity


def test_parity_fails_when_the_file_differs(glyphs_run: Path, glyphs_root: Path, tmp_path: Path) -> None:
    model = load_run_model(glyphs_run, "cpu")
    export_run(model, "torchscript", tmp_path / "m.pt", places=Places.of(glyphs_root), check=False)
    inputs, expected = parity_inputs(model, run_dataset(model, Places.of(glyphs_root)))
    shifted = expected + np.float32(1e-3)
    parity = check_parity("torchscript", tmp_path / "m.pt", inputs, shifted)
    assert not parity.passed and parity.max_abs_diff == pytest.approx(1e-3, rel=1e-2)


def test_cli_prints_the_parity_figures(glyphs_run: Path, glyphs_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "g.onnx"
    done = invoke("export", str(glyphs_run), "--format", "onnx", "-o", str(out), "--data-root", str(glyphs_root))
    assert done.exit_code == 0, done.stderr
    assert "max |diff|" in done.stdout and "min cosine" in done.stdout and out.is_file()


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--format", "tflite", "-o", "{tmp}/m.onnx"], 2, "unknown export format"),
        (["--format", "onnx", "-o", "{tmp}/m.pt"], 2, ".onnx"),
        (["--format", "onnx", "-o", "{tmp}/missing/m.onnx"], 3, "does not exist"),
    ],
)
def test_bad_inputs_are_one_error_line(
    glyphs_run: Path, glyphs_root: Path, tmp_path: Path, args: list[str], code: int, needle: str
) -> None:
    done = invoke("export", str(glyphs_run), *[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert done.exit_code == code, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith(("error:", "hint:"))]
    assert len(errors) == 2 and needle in errors[0]
    assert not list(tmp_path.rglob("m.*"))
