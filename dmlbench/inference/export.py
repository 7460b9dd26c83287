"""Export a run's embedder to ONNX or TorchScript, with its preprocessing in the file, and check parity.

Both formats take float32 images [batch, C, H, W] (any batch size) already preprocessed as the metadata
says, and return the embeddings [batch, D] (L2-normalised when `output_normalized`). The model is exported
in eval mode, so a BatchStandardize head uses its running statistics. ONNX goes through torch's dynamo
exporter with a dynamic batch dimension; TorchScript is traced: the embedder's only branches (frozen
backbone, normalised output, eval-mode statistics) are fixed by the run's config, so the trace is exact.

The parity check runs the exported file in a fresh interpreter that never imports dmlbench
(`parity_child.py`: onnxruntime, or `torch.jit.load`) on real images of the run's dataset and compares with
dmlbench's own float32 embeddings of the same images.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

import dmlbench
from dmlbench.errors import EnvironmentFailure, UsageError, first_line
from dmlbench.events import Event, EventHandler, emit
from dmlbench.utils.io import atomic_path

if TYPE_CHECKING:
    import torch

    from dmlbench.inference.embed import RunModel
    from dmlbench.paths import Places

ExportFormat = Literal["onnx", "torchscript"]
FORMATS: tuple[ExportFormat, ...] = ("onnx", "torchscript")
SUFFIXES: dict[str, str] = {"onnx": ".onnx", "torchscript": ".pt"}
INPUT_NAME, OUTPUT_NAME = "images", "embeddings"
METADATA_FILE = "dmlbench.json"  # TorchScript extra file (parity_child.py reads the same name)
PARITY_TOLERANCE = 1e-4  # float32 on CPU: the exported graph may reorder sums, not change the maths
PARITY_IMAGES = 64
PARITY_TIMEOUT_S = 1800
_CHILD = Path(__file__).with_name("parity_child.py")
PathArg = str | os.PathLike[str]


@dataclass(frozen=True)
class ParityResult:
    """How far the exported file's embeddings are from dmlbench's, measured without dmlbench."""

    max_abs_diff: float
    min_cosine: float
    rows: int
    batch_sizes: list[int]
    runtime: str
    metadata: dict[str, str]
    dmlbench_imported: bool
    tolerance: float = PARITY_TOLERANCE

    @property
    def passed(self) -> bool:
        """Whether the largest difference is within the float32 tolerance."""
        return self.max_abs_diff <= self.tolerance


@dataclass(frozen=True)
class ExportResult:
    """The written file, the metadata recorded in it, and the parity check (None when skipped)."""

    path: Path
    format: ExportFormat
    metadata: dict[str, str]
    parity: ParityResult | None


def check_format(fmt: str) -> ExportFormat:
    """`fmt` as an export format, or a usage error listing them."""
    for known in FORMATS:
        if fmt == known:
            return known
    raise UsageError(f"unknown export format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")


def metadata(rm: RunModel, pre: dict[str, Any], embedding_dim: int) -> dict[str, str]:
    """What a user of the file needs, as text (ONNX metadata_props are strings; TorchScript gets the same).

    `embedding_dim` is the measured output width (a raw-pixel baseline's is not its config's)."""
    cfg = rm.cfg
    fields: dict[str, Any] = {
        "producer": f"dmlbench {dmlbench.__version__}",
        "run_id": rm.run.run_id,
        "model_fingerprint": rm.fingerprint,
        "dataset": cfg.dataset,
        "backbone": cfg.model.backbone,
        "input_name": INPUT_NAME,
        "input_layout": "NCHW float32, preprocessed",
        "input_size": [pre["image_size"], pre["image_size"]],
        "channels": pre["channels"],
        "mean": pre["mean"],
        "std": pre["std"],
        "resize": f"shorter side to {pre['resize_side']}, centre crop" if pre["layout"] == "files" else "whole image",
        "interpolation": pre["interpolation"],
        "output_name": OUTPUT_NAME,
        "embedding_dim": embedding_dim,
        "output_normalized": bool(cfg.model.normalize),
        "preprocessing": pre,
    }
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in fields.items()}


def parity_inputs(rm: RunModel, prepared: Any, n: int = PARITY_IMAGES) -> tuple[np.ndarray, np.ndarray]:
    """(preprocessed images, dmlbench's float32 embeddings) of the first `n` evaluation images of the run."""
    import torch

    from dmlbench.datasets.torch_data import dataset_for_model
    from dmlbench.inference.embed import split_rows

    present = set(prepared.index["split"].astype(str))
    split = "test" if "test" in present else "query"
    rows = split_rows(prepared, split).iloc[:n]
    dataset = dataset_for_model(prepared, rows, rm.cfg.model)
    if hasattr(dataset, "get_batch"):
        images, _ = dataset.get_batch(list(range(len(dataset))))
    else:
        images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    model = rm.model.to("cpu").eval()
    with torch.inference_mode():
        expected = model(images.float()).float()
    return images.float().numpy(), expected.numpy()


def _quietly() -> contextlib.ExitStack:
    """Swallow what exporters print and warn (core never prints; deprecation notes are not the user's)."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


def _export_onnx(model: torch.nn.Module, example: torch.Tensor, tmp: Path, meta: dict[str, str]) -> None:
    import onnx
    import torch

    batch = torch.export.Dim("batch", min=1)
    try:
        with _quietly():
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},),
                external_data=False,
            )
    except Exception as err:  # the exporter raises many types for unsupported operators
        raise UsageError(
            f"this model cannot be exported to ONNX: {first_line(err)}", hint="try --format torchscript"
        ) from None
    proto = onnx.load(str(tmp))
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(tmp))


def _export_torchscript(model: torch.nn.Module, example: torch.Tensor, tmp: Path, meta: dict[str, str]) -> None:
    import torch

    try:
        with _quietly():
            traced = torch.jit.trace(model, example, check_trace=False)  # type: ignore[no-untyped-call]
            torch.jit.save(traced, str(tmp), _extra_files={METADATA_FILE: json.dumps(meta)})
    except Exception as err:  # tracing fails in many ways on exotic modules
        raise UsageError(
            f"this model cannot be traced to TorchScript: {first_line(err)}", hint="try --format onnx"
        ) from None


def check_parity(fmt: ExportFormat, path: Path, inputs: np.ndarray, expected: np.ndarray) -> ParityResult:
    """Run `path` in a fresh interpreter that never imports dmlbench and compare with `expected`."""
    with tempfile.TemporaryDirectory(prefix="dmlbench-parity-") as folder:
        inputs_path, expected_path = Path(folder) / "inputs.npy", Path(folder) / "expected.npy"
        np.save(inputs_path, inputs)
        np.save(expected_path, expected)
        # -I: no PYTHONPATH, no user site, no script folder on sys.path: only the installed runtimes
        command = [sys.executable, "-I", str(_CHILD), fmt, str(path), str(inputs_path), str(expected_path)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=PARITY_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise EnvironmentFailure(
                f"the parity check of {path} did not finish in {PARITY_TIMEOUT_S} s",
                hint="the machine is overloaded; rerun, or skip the check with --no-check",
            ) from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise EnvironmentFailure(
            f"the parity check could not run {path}: {lines[-1] if lines else f'exit code {done.returncode}'}",
            hint="onnxruntime (for ONNX) or torch must be installed in this Python; --no-check skips the check",
        )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return ParityResult(
        max_abs_diff=float(report["max_abs_diff"]),
        min_cosine=float(report["min_cosine"]),
        rows=int(report["rows"]),
        batch_sizes=[int(b) for b in report["batch_sizes"]],
        runtime=str(report["runtime"]),
        metadata={str(k): str(v) for k, v in report["metadata"].items()},
        dmlbench_imported=bool(report["dmlbench_imported"]),
    )


def export_run(
    rm: RunModel,
    fmt: str,
    output: PathArg,
    *,
    places: Places,
    check: bool = True,
    on_event: EventHandler | None = None,
) -> ExportResult:
    """Write the run's embedder as `fmt` to `output` atomically, then (with `check`) verify it.

    The check uses the first images of the run's evaluation split; `ExportResult.parity.passed` says
    whether it stayed within `PARITY_TOLERANCE` (the file is kept either way, to be inspected).
    """
    import torch

    from dmlbench.inference.embed import check_output, run_dataset
    from dmlbench.inference.images import run_preprocessing

    kind = check_format(fmt)
    target = check_output(output, SUFFIXES[kind])
    prepared = run_dataset(rm, places)
    inputs, expected = parity_inputs(rm, prepared)
    meta = metadata(rm, run_preprocessing(rm.cfg, prepared).as_dict(), int(expected.shape[1]))
    model = rm.model.to("cpu").eval()
    # two rows: a batch of one lets tracers specialise the batch dimension to 1
    example = torch.from_numpy(np.repeat(inputs[:1], 2, axis=0) if inputs.shape[0] < 2 else inputs[:2])
    emit(on_event, Event("log", "export", message=f"exporting {rm.run.run_id} to {kind}"))
    with torch.no_grad(), atomic_path(target) as tmp:
        if kind == "onnx":
            _export_onnx(model, example, tmp, meta)
        else:
            _export_torchscript(model, example, tmp, meta)
    parity = None
    if check:
        emit(on_event, Event("log", "export", message=f"checking {target.name} on {inputs.shape[0]} real images"))
        parity = check_parity(kind, target, inputs, expected)
    return ExportResult(target, kind, meta, parity)
