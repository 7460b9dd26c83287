"""The model behind a run folder: a trained run's weights, or a baseline's untrained network or raw pixels.

Evaluation owns this (not `dmlbench.models`): rebuilding a model from a run folder needs the config and
the run directory, and `models` stays a leaf that imports neither.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from dmlbench.errors import MissingInputError, first_line
from dmlbench.registry import Registry
from dmlbench.rundir import Manifest, RunDir

if TYPE_CHECKING:
    import torch

    from dmlbench.config import TrainConfig
    from dmlbench.models.embedder import Embedder

# A baseline is a factory `(resolved config) -> nn.Module` mapping the evaluation images to vectors.
BASELINES: Registry[Any] = Registry("baseline")
BASELINES.add("untrained", "dmlbench.evaluation.trained:untrained_embedder")
BASELINES.add("raw", "dmlbench.evaluation.trained:raw_pixels")


def read_run_config(run: RunDir) -> TrainConfig:
    """The run's config.toml; an unreadable file (binary, unreadable) is a damaged run, not a traceback."""
    try:
        return run.read_config()
    except (UnicodeDecodeError, OSError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else type(err).__name__
        raise MissingInputError(
            f"cannot read {run.config_path}: {reason}", hint="the run is damaged; retrain it with --force"
        ) from None


def load_trained_embedder(
    run_dir: str | os.PathLike[str], device: torch.device | str = "cpu"
) -> tuple[Embedder, TrainConfig]:
    """Rebuild a finished run's embedder from `config.toml` + `train/model.pt` (weights only), in eval mode."""
    import torch

    from dmlbench.models import build_embedder

    run = RunDir(run_dir)
    run.require_complete()
    cfg = read_run_config(run)
    backbone = run.stored_plugin_name(cfg.model.backbone or "")  # a file backbone: the run's own copy
    model = build_embedder(cfg.model.model_copy(update={"backbone": backbone}), load_weights=False)
    try:
        state = torch.load(run.model_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise MissingInputError(
            f"cannot load {run.model_path}: {first_line(err)}",
            hint=f"the run is damaged; retrain with `dmlbench train --run-dir {run.root} --force`",
        ) from err
    return model.to(device).eval(), cfg


def untrained_embedder(cfg: TrainConfig) -> torch.nn.Module:
    """The config's backbone and head before any training step: the weights a run with this seed starts from.

    Training seeds torch with `cfg.seed` right before building the embedder, so the same draw here gives
    the same initial weights; ImageNet (or `model.weights`) for pretrained backbones, random otherwise.
    The caller's RNG state is left untouched.
    """
    import torch

    from dmlbench.models import build_embedder

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return build_embedder(cfg.model)


def raw_pixels(cfg: TrainConfig) -> torch.nn.Module:
    """Flatten each input image, exactly as the model would see it (the test transform), into one vector."""
    from torch import nn

    del cfg  # the transform, not the model, decides what the pixels are
    return nn.Flatten(start_dim=1)


def baseline_embedder(kind: str, cfg: TrainConfig) -> torch.nn.Module:
    """The model of baseline `kind` ("untrained" | "raw"); UnknownNameError with did-you-mean otherwise."""
    factory = BASELINES.get(kind)
    model: torch.nn.Module = factory(cfg)
    return model.eval()


def load_run_embedder(run: RunDir, manifest: Manifest, device: torch.device | str) -> tuple[Any, TrainConfig]:
    """(model in eval mode on `device`, resolved config) for any complete run folder, baselines included."""
    if manifest.kind == "baseline":
        cfg = read_run_config(run)
        if manifest.baseline is None:
            raise MissingInputError(
                f"{run.manifest_path} is a baseline without a `baseline` kind", hint="recompute it with --force"
            )
        return baseline_embedder(manifest.baseline, cfg).to(device), cfg
    return load_trained_embedder(run.root, device)
