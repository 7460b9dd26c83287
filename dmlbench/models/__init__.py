"""Embedding models: BACKBONES registry (one line per backbone, with its facts) and the Embedder built from `[model]`.

Importing this package is cheap: backbones (and timm) are imported on first use. `timm:<model>` names
reach every timm model through the same registry, `path/to/file.py:Attr` a backbone of your own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dmlbench.models.defaults import resolve_model_defaults
from dmlbench.models.facts import TIMM_PREFIX, BackboneInfo, is_timm_name
from dmlbench.models.info import preprocessing
from dmlbench.models.registry import BACKBONES, backbone_info

if TYPE_CHECKING:
    from dmlbench.config import ModelConfig
    from dmlbench.models.embedder import Embedder

__all__ = [
    "BACKBONES",
    "TIMM_PREFIX",
    "BackboneInfo",
    "backbone_info",
    "build_embedder",
    "is_timm_name",
    "preprocessing",
    "resolve_model_defaults",
]


def build_embedder(model_cfg: ModelConfig, *, in_channels: int | None = None, load_weights: bool = True) -> Embedder:
    """Backbone -> pooled features -> Linear(embedding_dim) (-> L2 normalisation) from a resolved `[model]`.

    `load_weights=False` skips pretrained/--weights loading (the caller restores a trained state_dict).
    """
    from pathlib import Path

    from dmlbench.models.embedder import Embedder
    from dmlbench.models.user_backbone import as_trunk

    if model_cfg.backbone is None:
        raise ValueError("build_embedder needs a resolved [model] (backbone is None)")
    channels = in_channels or model_cfg.in_channels or 3
    weights = Path(model_cfg.weights) if (model_cfg.weights and load_weights) else None
    # Context reaches only the factories that declare it (image_size: timm's fixed-size models).
    backbone = BACKBONES.build(
        model_cfg.backbone,
        {},
        in_channels=channels,
        pretrained=bool(model_cfg.pretrained) and load_weights and weights is None,
        weights=weights,
        image_size=model_cfg.image_size,
    )
    return Embedder(
        as_trunk(backbone, name=model_cfg.backbone, in_channels=channels, image_size=model_cfg.image_size),
        embedding_dim=model_cfg.embedding_dim,
        normalize=bool(model_cfg.normalize),
        freeze_bn=bool(model_cfg.freeze_bn),
        freeze_backbone=model_cfg.freeze_backbone,
        # None: a run recorded before the key existed, built as it was trained.
        feature_norm=model_cfg.feature_norm or "none",
    )
