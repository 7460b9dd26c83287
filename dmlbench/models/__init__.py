"""Embedding models: BACKBONES registry (one line per backbone) and the Embedder built from `[model]`.

Importing this package is cheap: backbones are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dmlbench.registry import Registry

if TYPE_CHECKING:
    from dmlbench.config import ModelConfig
    from dmlbench.models.embedder import Embedder

BACKBONES: Registry[Any] = Registry("backbone")
BACKBONES.add("small_cnn", "dmlbench.models.backbones:small_cnn")
BACKBONES.add("googlenet", "dmlbench.models.backbones:googlenet")
BACKBONES.add("resnet18", "dmlbench.models.backbones:resnet18")
BACKBONES.add("resnet50", "dmlbench.models.backbones:resnet50")


def build_embedder(model_cfg: ModelConfig, *, in_channels: int | None = None, load_weights: bool = True) -> Embedder:
    """Backbone -> pooled features -> Linear(embedding_dim) (-> L2 normalisation) from a resolved `[model]`.

    `load_weights=False` skips pretrained/--weights loading (the caller restores a trained state_dict).
    """
    from pathlib import Path

    from dmlbench.models.embedder import Embedder

    if model_cfg.backbone is None:
        raise ValueError("build_embedder needs a resolved [model] (backbone is None)")
    channels = in_channels or model_cfg.in_channels or 3
    weights = Path(model_cfg.weights) if (model_cfg.weights and load_weights) else None
    backbone = BACKBONES.get(model_cfg.backbone)(
        in_channels=channels,
        pretrained=bool(model_cfg.pretrained) and load_weights and weights is None,
        weights=weights,
    )
    return Embedder(
        backbone,
        embedding_dim=model_cfg.embedding_dim,
        normalize=bool(model_cfg.normalize),
        freeze_bn=bool(model_cfg.freeze_bn),
    )
