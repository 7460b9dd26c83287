"""Backbone-dependent defaults of `[model]`: image size, channels, weights, preprocessing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dmlbench.errors import ConfigError
from dmlbench.models.registry import backbone_info

if TYPE_CHECKING:
    from dmlbench.config import ModelConfig


def resolve_model_defaults(model: ModelConfig, spec_image_size: int, spec_channels: int) -> ModelConfig:
    """A copy of `[model]` with every backbone-dependent default filled (the dataset supplies the rest).

    Image size, channels and preprocessing come from the backbone's facts (timm: its pretrained
    config) unless the config sets them; the resolved values are what a run records, so evaluation
    preprocesses exactly as training did.
    """
    if model.backbone is None:
        raise ValueError("resolve_model_defaults needs model.backbone (the dataset's default or the user's)")
    info = backbone_info(model.backbone)
    resolved = model.model_copy(deep=True)
    if resolved.image_size is None:
        resolved.image_size = info.default_image_size or spec_image_size
    if resolved.in_channels is None:
        resolved.in_channels = info.in_channels or spec_channels
    if resolved.pretrained is None:
        resolved.pretrained = info.pretrained_by_default
    if resolved.freeze_bn is None:
        # A trunk that starts from trained weights keeps their BN statistics: P x K batches of a few
        # classes would corrupt them. A randomly initialised trunk needs its BN to learn.
        resolved.freeze_bn = bool(resolved.pretrained or resolved.weights)
    if resolved.feature_norm is None:
        # A random trunk's features share one dominant mean (every embedding starts in a narrow cone);
        # standardising them opens it: proxy anchor on glyphs R@1 0.07 -> 0.75 (docs/losses/index.md).
        # Trained weights keep the paper's plain Linear head.
        resolved.feature_norm = "none" if (resolved.pretrained or resolved.weights) else "batch"
    if resolved.mean is None and info.mean is not None:
        resolved.mean = list(info.mean)
    if resolved.std is None and info.std is not None:
        resolved.std = list(info.std)
    if resolved.interpolation is None and info.interpolation is not None:
        resolved.interpolation = info.interpolation  # type: ignore[assignment]  # validated by pydantic
    if resolved.crop_pct is None and info.crop_pct is not None:
        resolved.crop_pct = info.crop_pct
    _check_statistics(resolved)
    return resolved


def _check_statistics(model: ModelConfig) -> None:
    if (model.mean is None) != (model.std is None):
        raise ConfigError("model.mean and model.std go together", hint="set both, or neither")
    if model.mean is not None and model.std is not None:
        if len(model.mean) != len(model.std):
            raise ConfigError(
                f"model.mean has {len(model.mean)} values but model.std has {len(model.std)}",
                hint="give one value per channel (or one for all)",
            )
        if len(model.mean) not in (1, 3, model.in_channels):
            raise ConfigError(
                f"model.mean has {len(model.mean)} values for {model.in_channels}-channel input",
                hint="give one value per channel (or one for all)",
            )
