"""Metric-learning losses: one small module per loss, one registry line per loss.

`LOSSES.build(name, params)` / `build_loss(name, **params)` instantiate by registry name; the classes can
also be used directly as plain `torch.nn.Module`s: `loss(embeddings[N, D], labels[N]) -> scalar`.
Besides the fixed names, `pml:<ClassName>` names any pytorch-metric-learning loss (see losses/pml.py).
"""

from __future__ import annotations

from typing import Any

from dmlbench.losses.base import LossConfigError, LossInputError, MetricLoss
from dmlbench.losses.clustering import ClusteringLoss
from dmlbench.losses.lifted import LiftedStructLoss
from dmlbench.losses.npairs import NPairsLoss
from dmlbench.losses.pml import LossRegistry
from dmlbench.losses.triplet import TripletLoss

LOSSES: LossRegistry = LossRegistry("loss", base=MetricLoss)
LOSSES.add("clustering", "dmlbench.losses.clustering:ClusteringLoss")
LOSSES.add("triplet", "dmlbench.losses.triplet:TripletLoss")
LOSSES.add("lifted", "dmlbench.losses.lifted:LiftedStructLoss")
LOSSES.add("npairs", "dmlbench.losses.npairs:NPairsLoss")
# pytorch-metric-learning baselines (dmlbench/losses/pml.py); `pml:<ClassName>` reaches every other PML loss.
LOSSES.add("contrastive", "dmlbench.losses.pml:ContrastiveLoss")
LOSSES.add("multisimilarity", "dmlbench.losses.pml:MultiSimilarityLoss")
LOSSES.add("proxyanchor", "dmlbench.losses.pml:ProxyAnchorLoss")
LOSSES.add("normsoftmax", "dmlbench.losses.pml:NormSoftmaxLoss")
LOSSES.add("arcface", "dmlbench.losses.pml:ArcFaceLoss")
LOSSES.add("supcon", "dmlbench.losses.pml:SupConLoss")


def build_loss(name: str, **params: Any) -> MetricLoss:
    """Instantiate the loss registered as `name` with keyword `params` (unknown name/param → UsageError)."""
    loss = LOSSES.build(name, params)
    assert isinstance(loss, MetricLoss)
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
