"""last.pt (everything needed to continue bit-exactly) and model.pt (weights only).

This module alone knows last.pt's keys: `save_checkpoint` writes them and `restore` puts them back.
Everything is stored as tensors, numbers, strings, lists and dicts, so both files load with
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from dmlbench.errors import MissingInputError
from dmlbench.utils.io import atomic_path

FORMAT = "dmlbench-train-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Position:
    """Where training stands: `batch` batches of epoch `epoch` are done, `step` optimizer steps in all."""

    epoch: int = 0
    batch: int = 0
    step: int = 0


def rng_states() -> dict[str, Any]:
    """Python, numpy and torch (CPU and CUDA) generator states in weights_only-safe types."""
    version, internal, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    states: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": {
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what `rng_states` saved."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = states["numpy"]
    keys = numpy_state["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, numpy_state["pos"], numpy_state["has_gauss"], numpy_state["cached"]))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class TrainState(Protocol):
    """What a step changes besides the position (the loop's `Parts`): saved and restored as one."""

    @property
    def model(self) -> torch.nn.Module: ...  # the embedder itself, never its DDP wrapper
    @property
    def loss_fn(self) -> torch.nn.Module: ...
    @property
    def optimizer(self) -> torch.optim.Optimizer: ...
    @property
    def scheduler(self) -> torch.optim.lr_scheduler.LRScheduler: ...
    @property
    def scaler(self) -> torch.amp.GradScaler | None: ...


def save_checkpoint(
    path: Path, *, run_id: str, state: TrainState, position: Position, best: dict[str, Any] | None
) -> None:
    """Write last.pt atomically (the loss's state too: proxies and other learnable loss parameters)."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "run_id": run_id,
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "scaler": state.scaler.state_dict() if state.scaler is not None else None,
        "position": {"epoch": position.epoch, "batch": position.batch, "step": position.step},
        "rng": rng_states(),
        "best": best,
        "loss": state.loss_fn.state_dict(),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def restore(payload: dict[str, Any], state: TrainState) -> tuple[Position, dict[str, Any] | None]:
    """Put a `load_checkpoint` payload back into freshly built parts and the generators; (position, best).

    The generators come last: nothing between this call and the next step may draw a random number.
    """
    state.model.load_state_dict(payload["model"])
    if payload.get("loss"):  # a loss without state saved {}
        state.loss_fn.load_state_dict(payload["loss"])
    state.optimizer.load_state_dict(payload["optimizer"])
    state.scheduler.load_state_dict(payload["scheduler"])
    if state.scaler is not None and payload["scaler"] is not None:
        state.scaler.load_state_dict(payload["scaler"])
    position = Position(**{k: int(v) for k, v in payload["position"].items()})
    set_rng_states(payload["rng"])
    return position, payload.get("best")


def load_checkpoint(path: Path, *, run_id: str) -> dict[str, Any]:
    """Read last.pt; a missing, corrupt or foreign file is a MissingInputError naming the fix."""
    hint = "start over with --force (the run's checkpoint cannot be used)"
    if not path.is_file():
        raise MissingInputError(f"no checkpoint to resume from at {path}", hint=hint)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, bad pickle, unsafe globals: all mean "not our checkpoint"
        raise MissingInputError(f"{path} is corrupt or not a checkpoint ({type(err).__name__})", hint=hint) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise MissingInputError(f"{path} is not a dmlbench training checkpoint", hint=hint)
    if payload.get("format_version") != FORMAT_VERSION:
        raise MissingInputError(f"{path} has checkpoint format {payload.get('format_version')!r}", hint=hint)
    if payload.get("run_id") != run_id:
        raise MissingInputError(f"{path} belongs to run {payload.get('run_id')!r}, not {run_id!r}", hint=hint)
    return payload


def export_weights(path: Path, model: torch.nn.Module) -> None:
    """Write the weights-only model.pt (a plain state_dict on CPU) atomically."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
