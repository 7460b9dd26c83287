"""Optimizer and lr schedule from `[optim]`/`[schedule]`: the new embedding layer gets lr x head_lr_multiplier."""

from __future__ import annotations

import math

import torch

from dmlbench.config import OptimConfig, ScheduleConfig
from dmlbench.models.embedder import Embedder


def build_optimizer(model: Embedder, cfg: OptimConfig, loss_fn: torch.nn.Module | None = None) -> torch.optim.Optimizer:
    """RMSprop (paper), AdamW or SGD: backbone at lr, head at lr x head multiplier, loss parameters
    (proxies, class weights) at lr x the loss's own `param_lr_multiplier` (proxy-anchor's paper: 100).
    """
    assert cfg.lr is not None and cfg.head_lr_multiplier is not None and cfg.weight_decay is not None
    groups = [
        {"params": [p for p in model.backbone.parameters() if p.requires_grad], "lr": cfg.lr},
        {"params": [p for p in model.head.parameters() if p.requires_grad], "lr": cfg.lr * cfg.head_lr_multiplier},
    ]
    loss_params = [p for p in loss_fn.parameters() if p.requires_grad] if loss_fn is not None else []
    if loss_params:
        multiplier = float(getattr(loss_fn, "param_lr_multiplier", 1.0))
        groups.append({"params": loss_params, "lr": cfg.lr * multiplier})
    if cfg.name == "rmsprop":
        # alpha=0.9 is TensorFlow's RMSProp decay, the optimizer the paper's code base used.
        return torch.optim.RMSprop(groups, lr=cfg.lr, alpha=0.9, eps=1e-8, weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ValueError(f"unresolved optimizer {cfg.name!r}")


def lr_factor(step: int, *, total_steps: int, warmup_steps: int, cosine: bool) -> float:
    """Multiplier of the base lr at `step`: linear warm-up, then constant or cosine decay to zero."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if not cosine:
        return 1.0
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, *, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step LambdaLR implementing `lr_factor`."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(step, total_steps=total_steps, warmup_steps=cfg.warmup_steps, cosine=cfg.cosine),
    )
