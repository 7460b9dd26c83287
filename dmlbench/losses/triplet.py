"""Triplet loss with semihard negative mining (Schroff et al., FaceNet, CVPR 2015), as TF 1.x contrib."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dmlbench.losses._distances import pairwise_distance
from dmlbench.losses.base import LossConfigError, MetricLoss, attached_zero, class_masks, finite_margin


class TripletLoss(MetricLoss):
    """Semihard triplet loss (Schroff et al., 2015) as `tf.contrib.losses.metric_learning.triplet_semihard_loss`.

    For every ordered positive pair (a, p): the negative is the closest one farther than p
    (d_an > d_ap), else the farthest negative; loss max(margin + d_ap − d_an, 0), averaged over all ordered
    positive pairs. Distances are squared Euclidean (`squared=True`, the reference) or Euclidean.
    A batch without any positive pair gives 0 (the reference divides 0 by 0).
    """

    expects_normalized = True

    def __init__(self, margin: float = 1.0, squared: bool = True) -> None:
        super().__init__()
        if not isinstance(squared, bool):
            raise LossConfigError("squared must be true or false", hint="true: squared Euclidean, as the reference")
        self.margin = finite_margin(margin)
        self.squared = squared

    def extra_repr(self) -> str:
        return f"margin={self.margin}, squared={self.squared}"

    def compute(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Mean semihard triplet loss over the ordered positive pairs of a validated batch."""
        n = embeddings.shape[0]
        same, positive = class_masks(labels)
        if not bool(positive.any()):
            return attached_zero(embeddings)
        dist = pairwise_distance(embeddings, squared=self.squared)
        negative = ~same
        n_neg = negative.sum(dim=1, keepdim=True)
        # per anchor, its negatives' distances in increasing order (non-negatives pushed to the end), so the
        # semihard negative of (a, p) is the first sorted value > d_ap: a searchsorted, not an N³ mask
        neg_sorted, _ = torch.sort(dist.masked_fill(~negative, math.inf), dim=1)
        first_farther = torch.searchsorted(neg_sorted.detach(), dist.detach().contiguous(), right=True)
        has_farther = first_farther < n_neg
        farthest = neg_sorted.gather(1, (n_neg - 1).clamp_min(0)).expand(n, n)
        semihard = neg_sorted.gather(1, first_farther.clamp_max(n - 1))
        hardest = torch.where(has_farther, semihard, farthest)
        # no negative at all (single-class batch): the reference's masked maximum is the row minimum, 0
        hardest = torch.where(n_neg > 0, hardest, torch.zeros_like(hardest))
        losses = torch.relu(self.margin + dist - hardest)
        return losses[positive].sum() / positive.sum()
