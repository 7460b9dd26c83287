"""Embedder = backbone -> pooled features -> [batch standardisation] -> Linear(embedding_dim) -> optional L2 norm."""

from __future__ import annotations

import warnings
from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

FeatureNorm = Literal["none", "batch"]


class BatchStandardize(nn.Module):
    """`BatchNorm1d(affine=False)` whose training statistics are those of the global batch under DDP.

    Why it exists: a randomly initialised trunk hands the head post-ReLU, averaged features whose common
    mean dominates every sample, so every embedding starts in one narrow cone (mean cosine 0.997 on
    glyphs) and a proxy loss only moves the cone (docs/losses/proxyanchor.md). Standardising each
    feature over the batch removes the common part. Under DDP each rank embeds a slice of one global
    batch; the statistics come from the all-gathered slices (with gradient), so a DDP step stays exactly
    the one-process step, which `nn.BatchNorm1d` would not be. Eval uses the running statistics.
    """

    def __init__(self, num_features: int, *, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        self.running_mean: torch.Tensor
        self.running_var: torch.Tensor
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = features.float()  # statistics in float32 under autocast, as BatchNorm computes them
        if not self.training:
            out = (x - self.running_mean) / torch.sqrt(self.running_var + self.eps)
            return out.to(features.dtype)
        batch = _global_batch(x)
        if batch.shape[0] < 2:
            raise ValueError("batch standardisation needs at least 2 samples per training batch")
        mean = batch.mean(dim=0)
        var = batch.var(dim=0, unbiased=False)
        with torch.no_grad():
            # A non-finite batch (the step the loop will skip) must not poison the eval statistics.
            unbiased = var * (batch.shape[0] / (batch.shape[0] - 1))
            finite = torch.isfinite(mean) & torch.isfinite(unbiased)
            self.running_mean.copy_(
                torch.where(finite, torch.lerp(self.running_mean, mean, self.momentum), self.running_mean)
            )
            self.running_var.copy_(
                torch.where(finite, torch.lerp(self.running_var, unbiased, self.momentum), self.running_var)
            )
        return ((x - mean) / torch.sqrt(var + self.eps)).to(features.dtype)


def _global_batch(local: torch.Tensor) -> torch.Tensor:
    """Every rank's slice in rank order, gradients flowing back to each slice (this slice alone without DDP)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # see training.distributed.gather_batch
        return torch.cat(all_gather(local), dim=0)  # type: ignore[no-untyped-call]


class Embedder(nn.Module):
    """Maps images [N, C, H, W] to embeddings [N, embedding_dim].

    `head` is the new, randomly initialised layer (it gets the head learning-rate multiplier).
    With `freeze_bn`, BatchNorm layers of the backbone stay in eval mode during training, so a
    pretrained trunk keeps its ImageNet statistics (and DDP ranks stay equivalent to one process).
    With `freeze_backbone`, only the head trains: the backbone's parameters do not require grad
    (so the optimizer leaves them alone) and the whole backbone stays in eval mode.
    `feature_norm="batch"` standardises the pooled features over the training batch before the head
    (`BatchStandardize`); `"none"` hands them to the head as they are.
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        embedding_dim: int,
        normalize: bool,
        freeze_bn: bool = False,
        freeze_backbone: bool = False,
        feature_norm: FeatureNorm = "none",
    ) -> None:
        super().__init__()
        out_features = getattr(backbone, "out_features", None)
        if not isinstance(out_features, int):
            raise TypeError("a backbone must expose `out_features: int`")
        self.backbone = backbone
        # Identity adds no state_dict keys, so runs saved before feature_norm existed still load.
        self.feature_norm: nn.Module = BatchStandardize(out_features) if feature_norm == "batch" else nn.Identity()
        self.head = nn.Linear(out_features, embedding_dim)
        self.normalize = normalize
        self.freeze_bn = freeze_bn
        self.freeze_backbone = freeze_backbone
        self.embedding_dim = embedding_dim
        if freeze_backbone:
            self.backbone.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.freeze_backbone:
            # Nothing flows back into a frozen trunk, so it keeps no activations for a backward pass.
            with torch.no_grad():
                features = self.backbone(images)
        else:
            features = self.backbone(images)
        embeddings: torch.Tensor = self.head(self.feature_norm(features))
        return F.normalize(embeddings, dim=1) if self.normalize else embeddings

    def train(self, mode: bool = True) -> Embedder:
        super().train(mode)
        if mode and self.freeze_backbone:
            # A frozen trunk is a fixed feature extractor: no dropout or drop-path noise, no BN updates.
            self.backbone.eval()
        elif mode and self.freeze_bn:
            for module in self.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self
