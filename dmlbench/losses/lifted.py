"""Lifted structured loss (Song, Xiang, Jegelka, Savarese, CVPR 2016), as TF 1.x contrib, computed stably."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dmlbench.losses._distances import pairwise_distance
from dmlbench.losses.base import MetricLoss, attached_zero, class_masks, finite_margin


class LiftedStructLoss(MetricLoss):
    """Lifted structured feature embedding loss (Song et al., CVPR 2016) as contrib's `lifted_struct_loss`.

    For every positive pair (i, j): J_ij = log(Σ_{k∉y_i} e^{m − d_ik} + Σ_{l∉y_j} e^{m − d_jl}) + d_ij on
    Euclidean distances, and L = Σ_{ordered pairs} [J_ij]₊² / (2 · #ordered pairs). The log-sum-exp runs over
    negatives only, so single-class batches give 0 and far-apart points never overflow (both NaN in TF).
    """

    expects_normalized = False

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = finite_margin(margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"

    def compute(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Lifted structured loss of a validated batch."""
        same, positive = class_masks(labels)
        if not bool(positive.any()) or bool(same.all()):
            return attached_zero(embeddings)
        dist = pairwise_distance(embeddings)
        # with at least two classes every row has a negative, so no row's log-sum-exp is -inf
        neg_lse = torch.logsumexp((self.margin - dist).masked_fill(same, -math.inf), dim=1)
        j = torch.logaddexp(neg_lse.unsqueeze(1), neg_lse.unsqueeze(0)) + dist
        return torch.relu(j[positive]).square().sum() / (2.0 * positive.sum())
