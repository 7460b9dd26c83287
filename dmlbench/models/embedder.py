"""Embedder = backbone -> pooled features -> Linear(embedding_dim) -> optional L2 normalisation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Embedder(nn.Module):
    """Maps images [N, C, H, W] to embeddings [N, embedding_dim].

    `head` is the new, randomly initialised layer (it gets the head learning-rate multiplier).
    With `freeze_bn`, BatchNorm layers of the backbone stay in eval mode during training, so a
    pretrained trunk keeps its ImageNet statistics (and DDP ranks stay equivalent to one process).
    With `freeze_backbone`, only the head trains: the backbone's parameters do not require grad
    (so the optimizer leaves them alone) and the whole backbone stays in eval mode.
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        embedding_dim: int,
        normalize: bool,
        freeze_bn: bool = False,
        freeze_backbone: bool = False,
    ) -> None:
        super().__init__()
        out_features = getattr(backbone, "out_features", None)
        if not isinstance(out_features, int):
            raise TypeError("a backbone must expose `out_features: int`")
        self.backbone = backbone
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
        embeddings: torch.Tensor = self.head(features)
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
