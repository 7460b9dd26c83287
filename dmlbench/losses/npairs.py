"""N-pair loss (Sohn, NeurIPS 2016), as TF 1.x contrib's `npairs_loss`, on a batch of labelled embeddings."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dmlbench.losses.base import LossConfigError, MetricLoss, attached_zero


def consecutive_pairs(labels: Tensor) -> tuple[Tensor, Tensor]:
    """(anchor, positive) indices: each class's samples, in batch order, paired 1st-2nd, 3rd-4th, ...

    Pairs are returned in increasing anchor index; an odd class's last sample is left out.
    """
    n = labels.shape[0]
    index = torch.arange(n, device=labels.device)
    order = torch.argsort(labels * n + index)  # by class, then batch position
    sorted_labels = labels[order]
    class_start = torch.searchsorted(sorted_labels, sorted_labels, right=False)
    rank = torch.arange(n, device=labels.device) - class_start
    class_size = torch.bincount(labels)[sorted_labels]
    is_anchor = (rank % 2 == 0) & (rank + 1 < class_size)
    positions = torch.nonzero(is_anchor).squeeze(1)
    anchors, positives = order[positions], order[positions + 1]
    by_anchor = torch.argsort(anchors)
    return anchors[by_anchor], positives[by_anchor]


class NPairsLoss(MetricLoss):
    """Multi-class N-pair loss (Sohn, 2016) with contrib's L2 regulariser 0.25·λ·(mean‖a‖² + mean‖p‖²).

    Pairs come from the batch: within each class, samples in batch order form (anchor, positive) pairs
    1st-2nd, 3rd-4th, ...; with K > 2 samples a class gives ⌊K/2⌋ pairs sharing a label (contrib's soft
    targets then split each row's target over them) and an odd last sample is unused. Logits are A·Pᵀ;
    the loss is the mean softmax cross-entropy of anchors over positives plus the regulariser.
    A batch without any pair gives 0.
    """

    expects_normalized = False
    row_order = "within_class"  # pairs are each class's rows in batch order (TF contrib's rule)

    def __init__(self, reg_lambda: float = 0.002) -> None:
        super().__init__()
        if isinstance(reg_lambda, bool) or not isinstance(reg_lambda, (int, float)):
            raise LossConfigError("reg_lambda must be a number", hint="e.g. reg_lambda = 0.002")
        if not math.isfinite(reg_lambda) or reg_lambda < 0:
            raise LossConfigError(f"reg_lambda must be finite and >= 0, got {reg_lambda}", hint="the default is 0.002")
        self.reg_lambda = float(reg_lambda)

    def extra_repr(self) -> str:
        return f"reg_lambda={self.reg_lambda}"

    def compute(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """N-pair loss of a validated batch."""
        anchor_idx, positive_idx = consecutive_pairs(labels)
        if anchor_idx.numel() == 0:
            return attached_zero(embeddings)
        anchors, positives = embeddings[anchor_idx], embeddings[positive_idx]
        pair_labels = labels[anchor_idx]
        targets = (pair_labels.unsqueeze(0) == pair_labels.unsqueeze(1)).to(embeddings.dtype)
        targets = targets / targets.sum(dim=1, keepdim=True)
        logits = anchors @ positives.T
        xent = -(targets * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
        reg = anchors.square().sum(dim=1).mean() + positives.square().sum(dim=1).mean()
        return xent + 0.25 * self.reg_lambda * reg
