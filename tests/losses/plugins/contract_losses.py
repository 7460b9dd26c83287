"""Loss plugins for the check-loss tests: one that meets the contract and four that each break one rule.

Loaded by path (`tests/losses/plugins/contract_losses.py:<Class>`), as a user's file would be.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn


def squared_distances(embeddings: Tensor) -> Tensor:
    return (embeddings.unsqueeze(0) - embeddings.unsqueeze(1)).pow(2).sum(-1)


def contrastive(embeddings: Tensor, labels: Tensor, margin: float, weights: Tensor | None = None) -> Tensor:
    """Positive pairs pulled together, negatives pushed beyond `margin`; an absent kind of pair adds 0."""
    distances = squared_distances(embeddings)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    off_diagonal = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    terms = torch.where(same, distances, torch.relu(margin - distances))
    pair_weights = off_diagonal.float() if weights is None else off_diagonal * weights.unsqueeze(1)
    return (terms * pair_weights).sum() / pair_weights.sum().clamp_min(1e-12)


class GoodLoss(nn.Module):
    """Meets every rule."""

    search_space = {"margin": {"low": 0.2, "high": 1.5}}

    def __init__(self, margin: float = 0.8) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return contrastive(embeddings.float(), labels, self.margin)


class NonFiniteLoss(GoodLoss):
    """log of the pairwise distances, the zero diagonal included: -inf on every batch."""

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return -torch.log(squared_distances(embeddings)).mean()


class OrderDependentLoss(GoodLoss):
    """Assumes rows come as (anchor, positive) pairs: rows 2i and 2i+1 are compared, whatever the labels."""

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        anchors, others = embeddings[0::2], embeddings[1::2]
        return (anchors - others).pow(2).sum(-1).mean()


class LabelValueLoss(GoodLoss):
    """Meant to weight rows by class frequency, but weights them by the class id's value."""

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        weights = 1.0 + labels.float() / labels.float().max().clamp_min(1.0) + labels.float().remainder(3)
        return contrastive(embeddings, labels, self.margin, weights)


class PerRankLoss(GoodLoss):
    """Averages over this rank's own rows only (pairs across ranks are lost): right in one process, wrong in DDP."""

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        if dist.is_available() and dist.is_initialized():
            share = len(labels) // dist.get_world_size()
            mine = slice(dist.get_rank() * share, (dist.get_rank() + 1) * share)
            embeddings, labels = embeddings[mine], labels[mine]
        return contrastive(embeddings, labels, self.margin)


class LearnedScaleLoss(GoodLoss):
    """A learnable parameter (a distance scale), which must join the optimizer as proxies do."""

    param_lr_multiplier = 10.0

    def __init__(self, margin: float = 0.8) -> None:
        super().__init__(margin)
        self.log_scale = nn.Parameter(torch.zeros(()))

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return contrastive(embeddings * self.log_scale.exp(), labels, self.margin)
