"""Backbones: each factory returns an nn.Module mapping images to pooled features, with `out_features`.

Factories share one signature `(*, in_channels, pretrained, weights)` so one call site builds them all.
Pretrained weights are never replaced silently: a failed download is an EnvironmentFailure.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dmlbench.errors import ConfigError, EnvironmentFailure, first_line
from dmlbench.models.weights import read_state_dict


class SmallCNN(nn.Module):
    """Four 3x3 conv layers pooled to a 4x4 grid and flattened, for 8x8 / 28x28 grayscale images.

    The head sees the 4x4 layout rather than one global average: on 8x8 digits where a stroke sits is
    most of what tells classes apart, and a globally pooled vector transferred worse to unseen
    classes (digits 5-9 test Recall@1 after 10 epochs 0.55-0.77 pooled, 0.78-0.94 with the grid;
    docs/training.md). No BatchNorm inside the trunk: the embedder standardises only the pooled features,
    over the global batch (`model.feature_norm`), which keeps a DDP step exactly the single-process step.
    """

    grid = 4

    def __init__(self, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(self.grid),
            nn.Flatten(),
        )
        self.out_features = 2 * width * self.grid * self.grid

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.features(images)
        return out


class _Trunk(nn.Module):
    """A torchvision classifier with its classification layer removed."""

    def __init__(self, net: nn.Module, out_features: int) -> None:
        super().__init__()
        self.net = net
        self.out_features = out_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(images)
        return out


def small_cnn(*, in_channels: int = 1, pretrained: bool = False, weights: Path | None = None) -> nn.Module:
    """The small CNN (trained from scratch; `pretrained`/`weights` are rejected rather than ignored)."""
    if weights is not None:
        raise ConfigError("small_cnn has no pretrained weights to load", hint="drop --weights / model.weights")
    return SmallCNN(in_channels)


def _imagenet_state(arch: str, enum: Any, pretrained: bool, weights: Path | None) -> dict[str, torch.Tensor] | None:
    if weights is not None:
        return read_state_dict(weights, hint=f"pass the torchvision {arch} ImageNet .pth file")
    if not pretrained:
        return None
    try:
        return dict(enum.get_state_dict(progress=False, check_hash=True))
    except Exception as err:  # urllib, hash and IO errors all mean "no weights"
        raise EnvironmentFailure(
            f"cannot download the ImageNet weights of {arch} ({type(err).__name__}: {first_line(err)})",
            hint=f"download {enum.url} elsewhere and pass --weights FILE, or train from scratch with --no-pretrained",
        ) from err


def _load_trunk(net: nn.Module, state: dict[str, torch.Tensor] | None, arch: str) -> None:
    if state is None:
        return
    # The classifier and googlenet's auxiliary heads are not part of the trunk.
    trunk_state = {k: v for k, v in state.items() if not k.startswith(("fc.", "aux1.", "aux2."))}
    hint = f"pass the torchvision ImageNet state_dict of {arch}"
    try:
        missing, unexpected = net.load_state_dict(trunk_state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ConfigError(f"the weights do not fit {arch}: {first_line(err, last=True)}", hint=hint) from None
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise ConfigError(
            f"the weights do not fit {arch}: missing {missing[:3]}, unexpected {unexpected[:3]}", hint=hint
        )


def _check_rgb(arch: str, in_channels: int) -> None:
    if in_channels != 3:
        raise ConfigError(f"{arch} takes 3-channel images, not {in_channels}", hint="set model.in_channels = 3")


def googlenet(*, in_channels: int = 3, pretrained: bool = True, weights: Path | None = None) -> nn.Module:
    """Inception-v1 (GoogLeNet, with BN in torchvision) pooled to 1024-d features; ImageNet weights by default."""
    from torchvision.models import GoogLeNet_Weights
    from torchvision.models import googlenet as tv_googlenet

    _check_rgb("googlenet", in_channels)
    state = _imagenet_state("googlenet", GoogLeNet_Weights.IMAGENET1K_V1, pretrained, weights)
    # transform_input maps ImageNet-normalised inputs to the range the original weights were trained on.
    net = tv_googlenet(weights=None, aux_logits=False, init_weights=state is None, transform_input=state is not None)
    _load_trunk(net, state, "googlenet")
    net.dropout = nn.Identity()
    net.fc = nn.Identity()
    return _Trunk(net, 1024)


def _resnet(
    arch: str, builder: Callable[..., nn.Module], enum: Any, pretrained: bool, weights: Path | None
) -> nn.Module:
    state = _imagenet_state(arch, enum, pretrained, weights)
    net = builder(weights=None)
    _load_trunk(net, state, arch)
    fc: Any = net.fc
    out_features = int(fc.in_features)
    net.fc = nn.Identity()
    return _Trunk(net, out_features)


def resnet18(*, in_channels: int = 3, pretrained: bool = True, weights: Path | None = None) -> nn.Module:
    """ResNet-18 pooled to 512-d features; ImageNet weights by default."""
    from torchvision.models import ResNet18_Weights
    from torchvision.models import resnet18 as tv_resnet18

    _check_rgb("resnet18", in_channels)
    return _resnet("resnet18", tv_resnet18, ResNet18_Weights.IMAGENET1K_V1, pretrained, weights)


def resnet50(*, in_channels: int = 3, pretrained: bool = True, weights: Path | None = None) -> nn.Module:
    """ResNet-50 pooled to 2048-d features; ImageNet weights by default."""
    from torchvision.models import ResNet50_Weights
    from torchvision.models import resnet50 as tv_resnet50

    _check_rgb("resnet50", in_channels)
    return _resnet("resnet50", tv_resnet50, ResNet50_Weights.IMAGENET1K_V1, pretrained, weights)
