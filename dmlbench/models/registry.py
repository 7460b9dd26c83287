"""The BACKBONES registry: one line per backbone, each with its facts (BackboneInfo)."""

from __future__ import annotations

import functools

from dmlbench.models.facts import BackboneInfo
from dmlbench.models.info import BackboneRegistry

_IMAGENET = BackboneInfo(pretrained_by_default=True, channels_last=True, in_channels=3)

BACKBONES = BackboneRegistry()
# Trained from scratch on the dataset's own size and channels; its few channels gain nothing from NHWC.
BACKBONES.register(
    "small_cnn", "dmlbench.models.backbones:small_cnn", BackboneInfo(pretrained_by_default=False, channels_last=False)
)
BACKBONES.register("googlenet", "dmlbench.models.backbones:googlenet", _IMAGENET)
BACKBONES.register("resnet18", "dmlbench.models.backbones:resnet18", _IMAGENET)
BACKBONES.register("resnet50", "dmlbench.models.backbones:resnet50", _IMAGENET)


def backbone_info(name: str) -> BackboneInfo:
    """The facts of backbone `name` (registered or `timm:<model>`); UnknownNameError with did-you-mean."""
    return BACKBONES.info(name)


@functools.cache  # every command's --help asks; installed plugins are read from metadata once
def backbone_help() -> str:
    """The `--backbone` help text, generated from the registry."""
    return f"{BACKBONES.describe_names()}."
