"""Backbones and the Embedder: shapes, normalisation, frozen BN, pretrained weights never faked."""

from __future__ import annotations

import urllib.error
from pathlib import Path
from typing import Any

import pytest
import torch

from dmlbench.config import ModelConfig
from dmlbench.errors import ConfigError, EnvironmentFailure, MissingInputError, UnknownNameError
from dmlbench.models import BACKBONES, build_embedder


def test_registry_lists_the_backbones_and_suggests_names() -> None:
    assert {"googlenet", "resnet18", "resnet50", "small_cnn"} <= set(BACKBONES.names())
    with pytest.raises(UnknownNameError) as info:
        BACKBONES.get("googlnet")
    assert "googlenet" in (info.value.hint or "")


@pytest.mark.parametrize(("size", "channels"), [(8, 1), (28, 1), (32, 3)])
def test_small_cnn_embedder_shapes_and_norm(size: int, channels: int) -> None:
    cfg = ModelConfig(backbone="small_cnn", embedding_dim=16, normalize=True, in_channels=channels)
    model = build_embedder(cfg)
    out = model(torch.rand(4, channels, size, size))
    assert out.shape == (4, 16)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(4))
    raw = build_embedder(cfg.model_copy(update={"normalize": False}))(torch.rand(4, channels, size, size))
    assert not torch.allclose(raw.norm(dim=1), torch.ones(4))


def test_head_is_the_only_new_layer_and_gets_its_own_parameters() -> None:
    model = build_embedder(ModelConfig(backbone="small_cnn", embedding_dim=8, normalize=True, in_channels=1))
    head = {id(p) for p in model.head.parameters()}
    assert head and head.isdisjoint(id(p) for p in model.backbone.parameters())


def _no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import torchvision.models._api as api

    def refuse(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(api, "load_state_dict_from_url", refuse)
    torch.hub.set_dir(str(tmp_path / "hub"))


@pytest.mark.parametrize("backbone", ["googlenet", "resnet18"])
def test_pretrained_without_network_is_an_error_not_a_fallback(
    backbone: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_network(monkeypatch, tmp_path)
    with pytest.raises(EnvironmentFailure) as info:
        build_embedder(ModelConfig(backbone=backbone, pretrained=True, normalize=True))
    assert "--weights" in (info.value.hint or "") and "--no-pretrained" in (info.value.hint or "")


def test_weights_file_loads_a_torchvision_state_dict(tmp_path: Path) -> None:
    from torchvision.models import resnet18

    reference = resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = build_embedder(ModelConfig(backbone="resnet18", pretrained=True, weights=str(path), normalize=True))
    trunk: Any = model.backbone
    torch.testing.assert_close(trunk.net.conv1.weight, reference.conv1.weight)
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "foreign.pth")
    with pytest.raises(ConfigError, match="do not fit"):
        build_embedder(ModelConfig(backbone="resnet18", weights=str(tmp_path / "foreign.pth"), normalize=True))
    (tmp_path / "junk.pth").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="not a torch state_dict"):
        build_embedder(ModelConfig(backbone="resnet18", weights=str(tmp_path / "junk.pth"), normalize=True))
    with pytest.raises(MissingInputError):
        build_embedder(ModelConfig(backbone="resnet18", weights=str(tmp_path / "absent.pth"), normalize=True))


def test_googlenet_from_scratch_gives_1024_features_and_frozen_bn() -> None:
    model = build_embedder(ModelConfig(backbone="googlenet", pretrained=False, normalize=True, freeze_bn=True))
    model.train()
    bns = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not bn.training for bn in bns)
    assert model.head.in_features == 1024
    with torch.no_grad():
        assert model(torch.rand(2, 3, 64, 64)).shape == (2, 64)


def test_torchvision_weights_may_also_be_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file
    from torchvision.models import resnet18

    reference = resnet18(weights=None)
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    model = build_embedder(ModelConfig(backbone="resnet18", weights=str(path), normalize=True))
    trunk: Any = model.backbone
    torch.testing.assert_close(trunk.net.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)


def test_unknown_backbone_hint_mentions_timm() -> None:
    with pytest.raises(UnknownNameError) as info:
        build_embedder(ModelConfig(backbone="resnet34", normalize=True))
    assert "resnet50" in (info.value.hint or "") and "timm:<model>" in (info.value.hint or "")
