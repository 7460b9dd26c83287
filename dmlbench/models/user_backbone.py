"""A backbone of your own as a trunk the Embedder takes: pooled features [N, F] with `out_features`.

A plugin backbone (docs/plugins.md) is a class or factory returning an `nn.Module` whose output is
features [N, F] or a feature map [N, C, H, W] (average-pooled here). Its width is read from an
`out_features` attribute when it has one, else from one dry forward pass on a zero image.
"""

from __future__ import annotations

import torch
from torch import nn

from dmlbench.errors import ConfigError


class PooledTrunk(nn.Module):
    """`net` with its feature maps average-pooled, and the width the Embedder's head needs."""

    def __init__(self, net: nn.Module, out_features: int) -> None:
        super().__init__()
        self.net = net
        self.out_features = out_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.net(images)
        return features.flatten(2).mean(dim=2) if features.ndim > 2 else features


def as_trunk(net: object, *, name: str, in_channels: int, image_size: int | None) -> nn.Module:
    """`net` itself when it already declares `out_features`, else wrapped so it does (one dry forward)."""
    if not isinstance(net, nn.Module):
        raise ConfigError(
            f"backbone {name!r} returned a {type(net).__name__}, not a torch.nn.Module",
            hint="a backbone is a class or factory returning an nn.Module",
        )
    if isinstance(getattr(net, "out_features", None), int):
        return net
    side = image_size or 32
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            probe = net(torch.zeros(2, in_channels, side, side))
    except Exception as err:
        raise ConfigError(
            f"backbone {name!r} failed on a [2, {in_channels}, {side}, {side}] batch: {type(err).__name__}: {err}",
            hint="a backbone maps images [N, C, H, W] to features [N, F] or feature maps [N, C, H, W]",
        ) from err
    finally:
        net.train(was_training)
    if not isinstance(probe, torch.Tensor) or probe.ndim not in (2, 4) or probe.shape[0] != 2:
        shape = tuple(probe.shape) if isinstance(probe, torch.Tensor) else type(probe).__name__
        raise ConfigError(
            f"backbone {name!r} returned {shape} for 2 images",
            hint="return features [N, F] or feature maps [N, C, H, W], or set an `out_features` attribute",
        )
    return PooledTrunk(net, int(probe.shape[1]))
