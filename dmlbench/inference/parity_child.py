"""Run an exported embedder the way a user's service would, without dmlbench, and compare its output.

Executed as a script in a fresh interpreter (`python -I parity_child.py ...`) by
`dmlbench.inference.export.check_parity`; it must never import dmlbench, so that a passing check proves the
file stands on its own. Arguments: FORMAT (onnx | torchscript), MODEL file, INPUTS .npy (preprocessed
images, float32 [N, C, H, W]), EXPECTED .npy (dmlbench's embeddings of them). Prints one JSON object:
max_abs_diff, min_cosine, rows, batch_sizes, metadata (as read back from the file), runtime, and
dmlbench_imported (whether anything pulled dmlbench in).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

METADATA_FILE = "dmlbench.json"  # the TorchScript extra file; ONNX uses metadata_props


def _onnx_runner(path: str) -> tuple[Callable[[np.ndarray], np.ndarray], dict[str, Any], str]:
    import onnxruntime as ort  # type: ignore[import-untyped]

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    metadata = dict(session.get_modelmeta().custom_metadata_map)

    def run(batch: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {name: batch})[0])

    return run, metadata, f"onnxruntime {ort.__version__}"


def _torchscript_runner(path: str) -> tuple[Callable[[np.ndarray], np.ndarray], dict[str, Any], str]:
    import torch

    extra = {METADATA_FILE: ""}
    module = torch.jit.load(path, map_location="cpu", _extra_files=extra)  # type: ignore[no-untyped-call]
    module.eval()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return np.asarray(module(torch.from_numpy(batch)).numpy())

    return run, json.loads(extra[METADATA_FILE] or "{}"), f"torch.jit {torch.__version__}"


def main(argv: list[str]) -> int:
    fmt, model_path, inputs_path, expected_path = argv
    runner = _onnx_runner if fmt == "onnx" else _torchscript_runner
    run, metadata, runtime = runner(model_path)
    inputs = np.load(inputs_path).astype(np.float32)
    expected = np.load(expected_path).astype(np.float64)
    # The whole batch at once, then single rows: a batch size fixed at export time fails one of the two.
    singles = min(3, inputs.shape[0])
    outputs = [run(inputs)] + [run(inputs[i : i + 1]) for i in range(singles)]
    references = [expected] + [expected[i : i + 1] for i in range(singles)]
    worst, cosine = 0.0, 1.0
    for got, want in zip(outputs, references, strict=True):
        got64 = got.astype(np.float64)
        if got64.shape != want.shape:
            raise SystemExit(f"output shape {got64.shape} differs from the expected {want.shape}")
        worst = max(worst, float(np.abs(got64 - want).max()))
        norms = np.linalg.norm(got64, axis=1) * np.linalg.norm(want, axis=1)
        cosine = min(cosine, float(((got64 * want).sum(axis=1) / np.maximum(norms, 1e-30)).min()))
    report = {
        "max_abs_diff": worst,
        "min_cosine": cosine,
        "rows": int(inputs.shape[0]),
        "batch_sizes": sorted({int(inputs.shape[0]), 1}),
        "metadata": metadata,
        "runtime": runtime,
        "dmlbench_imported": any(name == "dmlbench" or name.startswith("dmlbench.") for name in sys.modules),
    }
    sys.stdout.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
