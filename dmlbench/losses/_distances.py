"""The pairwise distance primitive shared by the losses, exactly as the TF 1.x reference computes it."""

from __future__ import annotations

import torch
from torch import Tensor


def pairwise_distance(embeddings: Tensor, *, squared: bool = False) -> Tensor:
    """Pairwise (squared) Euclidean distances [N, N] of `embeddings` [N, D], differentiable.

    Uses the Gram expansion ||x||² + ||y||² - 2x·y clamped at 0, like the reference, so the loss sees
    the same numbers (up to exact symmetrisation of the Gram matrix). The square root is taken only where
    D² > 0 (a tiny offset elsewhere keeps the backward pass finite, and the mask makes the gradient of a
    zero distance exactly 0). The diagonal is exactly 0.
    """
    sq_norms = (embeddings * embeddings).sum(dim=1)
    gram = embeddings @ embeddings.T
    # BLAS does not promise a bitwise-symmetric X·Xᵀ; an exactly symmetric matrix makes d(i, j) == d(j, i),
    # so symmetric choices tie exactly and row sums equal column sums (F(S) == F̃ when S is the GT medoids).
    gram = 0.5 * (gram + gram.T)
    d2 = sq_norms.unsqueeze(1) + sq_norms.unsqueeze(0) - 2.0 * gram
    d2 = d2.clamp_min(0.0)
    if squared:
        dist = d2
    else:
        nonpositive = d2 <= 0.0
        dist = torch.sqrt(d2 + nonpositive.to(d2.dtype) * 1e-16) * (~nonpositive).to(d2.dtype)
    n = embeddings.shape[0]
    off_diagonal = 1.0 - torch.eye(n, dtype=dist.dtype, device=dist.device)
    return dist * off_diagonal
