"""Metric-learning losses: one small module per loss, one registry line per loss (losses/registry.py).

`LOSSES.build(name, params)` / `build_loss(name, **params)` instantiate by name; the classes can also be
used directly as plain `torch.nn.Module`s: `loss(embeddings[N, D], labels[N]) -> scalar`. Besides the
fixed names, `pml:<ClassName>` names any pytorch-metric-learning loss, and `path/to/file.py:Attr` or
`package.module:Attr` a loss of your own (docs/plugins.md).

Importing this package is cheap (the registry is torch-free); the loss classes import torch on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dmlbench.losses.registry import LOSSES

if TYPE_CHECKING:
    from torch import nn

    from dmlbench.losses.base import LossConfigError, LossInputError, MetricLoss
    from dmlbench.losses.clustering import ClusteringLoss
    from dmlbench.losses.lifted import LiftedStructLoss
    from dmlbench.losses.npairs import NPairsLoss
    from dmlbench.losses.triplet import TripletLoss

_LAZY = {
    "LossConfigError": "dmlbench.losses.base",
    "LossInputError": "dmlbench.losses.base",
    "MetricLoss": "dmlbench.losses.base",
    "ClusteringLoss": "dmlbench.losses.clustering",
    "LiftedStructLoss": "dmlbench.losses.lifted",
    "NPairsLoss": "dmlbench.losses.npairs",
    "TripletLoss": "dmlbench.losses.triplet",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_loss(name: str, **params: Any) -> nn.Module:
    """Instantiate the loss `name` resolves to with keyword `params` (unknown name/param -> UsageError)."""
    from torch import nn

    loss = LOSSES.build(name, params)
    assert isinstance(loss, nn.Module)
    return loss


__all__ = [
    "LOSSES",
    "ClusteringLoss",
    "LiftedStructLoss",
    "LossConfigError",
    "LossInputError",
    "MetricLoss",
    "NPairsLoss",
    "TripletLoss",
    "build_loss",
]
