"""Device resolution: asking for CUDA without CUDA is an error, never a silent fallback."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dmlbench.errors import DeviceError, UsageError

if TYPE_CHECKING:
    import torch


def resolve_device(spec: str = "auto") -> torch.device:
    """Map "auto" | "cpu" | "cuda" | "cuda:N" to a torch.device that exists on this machine."""
    import torch

    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"--device {spec} was asked for, but this machine has no CUDA device",
                hint="use --device cpu (or auto), or install a CUDA build of torch on a GPU machine",
            )
        device = torch.device(spec)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) present",
                hint="pick an index below the device count",
            )
        return device
    raise UsageError(f"unknown device {spec!r}", hint="use auto, cpu, cuda or cuda:N")
