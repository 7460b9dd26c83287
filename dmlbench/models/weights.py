"""Reading a local weights file (`--weights`): tensors only, never pickled code."""

from __future__ import annotations

from pathlib import Path

import torch

from dmlbench.errors import ConfigError, first_line, require_file

TORCH_SUFFIXES = (".pth", ".pt", ".bin")
# Checkpoints written by training scripts wrap the weights in one of these keys.
_CONTAINER_KEYS = ("state_dict", "model")


def read_state_dict(path: Path, *, hint: str) -> dict[str, torch.Tensor]:
    """The tensors of a `.safetensors` file or a weights-only torch file, unwrapped to a flat state_dict.

    `hint` tells the user which file fits (it ends every error about the file's contents).
    """
    require_file(path, what="weights file", hint="check the --weights path")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state: object = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise ConfigError(f"{path} is not a safetensors file: {first_line(err)}", hint=hint) from None
    elif suffix in TORCH_SUFFIXES:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises several types for truncated, foreign or pickled-code files
            raise ConfigError(f"{path} is not a torch state_dict: {first_line(err)}", hint=hint) from None
    else:
        raise ConfigError(
            f"{path}: weights must be a .safetensors or {'/'.join(TORCH_SUFFIXES)} file, not {suffix or 'no suffix'}",
            hint=hint,
        )
    for key in _CONTAINER_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{path} does not hold a state_dict of tensors", hint=hint)
    tensors: dict[str, torch.Tensor] = {str(k): v for k, v in state.items()}
    if all(k.startswith("module.") for k in tensors):  # saved from a DistributedDataParallel wrapper
        tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
    return tensors
