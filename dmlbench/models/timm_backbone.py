"""timm models as trunks: `timm:<model>[.<tag>]`, facts from timm's pretrained config, weights from the
Hugging Face hub (through timm's own loader) or from a local file (`--weights`).

Pretrained weights are never replaced silently. Offline, huggingface_hub retries every request for
about 25 s per candidate file before failing (about 50 s per model here); one HEAD request without
retries decides first whether the hub answers at all, so an offline machine gets its error at once.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import adapt_input_conv, get_pretrained_cfg
from torch import nn

from dmlbench.errors import ConfigError, EnvironmentFailure, UnknownNameError, first_line
from dmlbench.models.facts import TIMM_PREFIX, BackboneInfo
from dmlbench.models.weights import read_state_dict
from dmlbench.registry import did_you_mean

logger = logging.getLogger(__name__)

_PROBE_TIMEOUT_S = 10.0
_HUB_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm looks for in a hub repo, in order
_INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


def _first_line(err: BaseException) -> str:
    line = first_line(err)
    return line if line == type(err).__name__ else f"{type(err).__name__}: {line}"


def _offline_hint(name: str) -> str:
    return (
        f"on a connected machine save the weights of {name} to a .safetensors file (docs/backbones.md) "
        "and pass --weights FILE, or train from scratch with --no-pretrained"
    )


@functools.cache
def _pretrained_names() -> frozenset[str]:
    return frozenset(timm.list_models(pretrained=True))


def timm_model_known(name: str) -> bool:
    """True when `name` is a timm architecture or `architecture.tag` of published weights."""
    if "." in name:
        return name in _pretrained_names()
    return bool(name) and bool(timm.is_model(name))


def check_timm_name(name: str) -> str:
    """`name` itself when timm knows it; otherwise UnknownNameError with close matches from timm's list."""
    if timm_model_known(name):
        return name
    arch, _, tag = name.partition(".")
    if tag and timm.is_model(arch):
        tags = sorted(n.partition(".")[2] for n in _pretrained_names() if n.partition(".")[0] == arch)
        raise UnknownNameError(
            f"timm model {arch!r} has no pretrained tag {tag!r}",
            hint=f"{did_you_mean(tag, tags)}tags: {', '.join(tags) or 'none (use --no-pretrained)'}",
        )
    candidates = sorted(TIMM_PREFIX + n for n in set(timm.list_models()) | _pretrained_names())
    listing = "list names with: python -c \"import timm; print(timm.list_models('*vit*'))\""
    raise UnknownNameError(
        f"unknown timm model {name!r}", hint=f"{did_you_mean(TIMM_PREFIX + name, candidates)}{listing}"
    )


def _cfg(name: str) -> Any:
    """timm's PretrainedCfg of `name` (its default tag when none is given), or None."""
    return get_pretrained_cfg(name)


def _has_weights(cfg: Any) -> bool:
    return cfg is not None and bool(cfg.hf_hub_id or cfg.url or cfg.file)


@functools.cache
def timm_info(name: str) -> BackboneInfo:
    """Facts of a timm model from its pretrained config (input size, statistics, interpolation, crop)."""
    from timm.data.config import resolve_data_config

    check_timm_name(name)
    cfg = _cfg(name)
    data = resolve_data_config({}, pretrained_cfg=cfg.to_dict() if cfg is not None else None)  # type: ignore[no-untyped-call]
    interpolation = str(data["interpolation"])
    return BackboneInfo(
        pretrained_by_default=_has_weights(cfg),
        channels_last=True,
        default_image_size=int(data["input_size"][-1]),
        in_channels=3,
        mean=tuple(float(v) for v in data["mean"]),
        std=tuple(float(v) for v in data["std"]),
        # timm's configs use bicubic or bilinear; anything else is resized the way most of them are.
        interpolation=interpolation if interpolation in _INTERPOLATIONS else "bicubic",
        crop_pct=float(data["crop_pct"]),
    )


class TimmTrunk(nn.Module):
    """A timm model without its classifier: images -> pooled pre-logit features [N, out_features]."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        # Some heads (ConvNeXt's, MobileNetV3's) add a layer between pooling and the classifier.
        width: Any = getattr(net, "head_hidden_size", None) or getattr(net, "num_features", None)
        if not isinstance(width, int):
            raise TypeError(f"{type(net).__name__} exposes no feature width (num_features)")
        self.out_features = width

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(images)
        return out


def timm_backbone(
    name: str,
    *,
    in_channels: int = 3,
    pretrained: bool = True,
    weights: Path | None = None,
    image_size: int | None = None,
) -> nn.Module:
    """The timm model `name` as a trunk; `weights` (a local file) wins over `pretrained` (the hub)."""
    check_timm_name(name)
    cfg = _cfg(name)
    kwargs: dict[str, Any] = {"num_classes": 0, "in_chans": in_channels}
    if image_size is not None and cfg is not None and cfg.fixed_input_size and image_size != cfg.input_size[-1]:
        # ViT-style models size their position embedding for one input size; timm resamples
        # pretrained ones to it.
        kwargs["img_size"] = image_size
    if pretrained and weights is None:
        return TimmTrunk(_pretrained_net(name, cfg, kwargs))
    net = _create(name, kwargs, pretrained=False)
    if weights is not None:
        load_weights_file(net, weights, name=name, cfg=cfg, in_channels=in_channels)
    return TimmTrunk(net)


def _create(name: str, kwargs: dict[str, Any], *, pretrained: bool) -> nn.Module:
    try:
        net: nn.Module = timm.create_model(name, pretrained=pretrained, **kwargs)
    except (TypeError, ValueError, AssertionError) as err:
        shown = ", ".join(f"{k}={v}" for k, v in kwargs.items())
        raise ConfigError(
            f"cannot build timm model {name!r} with {shown}: {_first_line(err)}",
            hint="check model.image_size and model.in_channels for this model",
        ) from None
    return net


def _pretrained_net(name: str, cfg: Any, kwargs: dict[str, Any]) -> nn.Module:
    if not _has_weights(cfg):
        raise ConfigError(
            f"timm model {name!r} has no pretrained weights",
            hint="train from scratch with --no-pretrained, or pass --weights FILE",
        )
    if cfg.hf_hub_id and not _in_hub_cache(cfg):
        _probe_hub(name, cfg)
    try:
        return _create(name, kwargs, pretrained=True)
    except ConfigError:
        raise
    except Exception as err:  # huggingface_hub, urllib, hash and IO errors all mean "no weights"
        raise EnvironmentFailure(
            f"cannot download the pretrained weights of {TIMM_PREFIX}{name} ({_first_line(err)})",
            hint=_offline_hint(name),
        ) from err


def _hub_files(cfg: Any) -> tuple[str, str | None, tuple[str, ...]]:
    repo, _, revision = str(cfg.hf_hub_id).partition("@")
    files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else _HUB_FILES
    return repo, revision or None, files


def _in_hub_cache(cfg: Any) -> bool:
    from huggingface_hub import try_to_load_from_cache

    repo, revision, files = _hub_files(cfg)
    return any(isinstance(try_to_load_from_cache(repo, f, revision=revision), str) for f in files)


def _probe_hub(name: str, cfg: Any) -> None:
    """One HEAD request without retries: EnvironmentFailure when the hub does not answer."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError

    repo, revision, files = _hub_files(cfg)
    url = hf_hub_url(repo, files[0], revision=revision)
    try:
        get_hf_file_metadata(url, timeout=_PROBE_TIMEOUT_S)
    except HfHubHTTPError:
        return  # the hub answered (a 404 for a repo without that file); timm's loader takes it from here
    except Exception as err:  # connection refused, DNS, timeout, HF_HUB_OFFLINE: the hub is out of reach
        raise EnvironmentFailure(
            f"cannot reach the Hugging Face hub for the pretrained weights of {TIMM_PREFIX}{name} ({_first_line(err)})",
            hint=_offline_hint(name),
        ) from None


def load_weights_file(net: nn.Module, path: Path, *, name: str, cfg: Any, in_channels: int) -> None:
    """Load a local state_dict into `net` (a timm model without classifier); every key must fit.

    The file may hold the classifier (it is dropped) and, for models timm converts (original DINO,
    CLIP, other position-embedding sizes), the layout timm's own checkpoint filter accepts.
    """
    hint = f"pass a state_dict of timm model {name} (saved with timm, or the hub's model.safetensors)"
    state = read_state_dict(path, hint=hint)
    module = sys.modules.get(type(net).__module__)
    checkpoint_filter = getattr(module, "checkpoint_filter_fn", None)
    if callable(checkpoint_filter):
        try:
            state = checkpoint_filter(state, net)
        except (KeyError, RuntimeError, ValueError, AttributeError) as err:
            raise ConfigError(f"{path} does not fit {TIMM_PREFIX}{name}: {err}", hint=hint) from None
    classifiers = cfg.classifier if cfg is not None else None
    for prefix in (classifiers,) if isinstance(classifiers, str) else tuple(classifiers or ()):
        state = {k: v for k, v in state.items() if not (k == prefix or k.startswith(f"{prefix}."))}
    first_convs = cfg.first_conv if cfg is not None else None
    for conv in (first_convs,) if isinstance(first_convs, str) else tuple(first_convs or ()):
        key = f"{conv}.weight"
        weight = state.get(key)
        if weight is not None and weight.ndim == 4 and weight.shape[1] != in_channels:
            state[key] = adapt_input_conv(in_channels, weight, base_chans=int(weight.shape[1]))
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        detail = first_line(err, last=True)
        raise ConfigError(f"{path} does not fit {TIMM_PREFIX}{name}: {detail}", hint=hint) from None
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected:
        raise ConfigError(
            f"{path} does not fit {TIMM_PREFIX}{name}: {len(missing)} missing keys {missing[:3]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:3]}",
            hint=hint,
        )
    logger.info("loaded %d tensors from %s into %s%s", len(state), path, TIMM_PREFIX, name)
