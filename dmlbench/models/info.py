"""Backbone facts and the backbone registry: known without importing torch (timm's facts import timm).

Every other package asks these facts (`backbone_info`) instead of testing backbone names, so a new
backbone is one registry line with its facts, and `timm:<model>` names work wherever a name does.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dmlbench.errors import ConfigError, EnvironmentFailure, UnknownNameError
from dmlbench.registry import Registry

if TYPE_CHECKING:
    from dmlbench.config import ModelConfig

TIMM_PREFIX = "timm:"
_TIMM_TARGET = "dmlbench.models.timm_backbone:timm_backbone"


@dataclass(frozen=True)
class BackboneInfo:
    """What the rest of dmlbench needs to know about a backbone before building it.

    `None` means "the dataset's value" (image size, channels) or "dmlbench's default preprocessing"
    (mean/std/interpolation/crop_pct: ImageNet statistics for image files, [-1, 1] for arrays).
    """

    pretrained_by_default: bool  # starts from published weights unless --no-pretrained
    channels_last: bool  # worth the NHWC layout on CUDA (convolutions on tensor cores)
    default_image_size: int | None = None
    in_channels: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str | None = None
    crop_pct: float | None = None


def is_timm_name(name: str) -> bool:
    """True for `timm:<model>` backbone names."""
    return name.startswith(TIMM_PREFIX)


def _timm() -> Any:
    """dmlbench.models.timm_backbone, imported on first use; a missing timm is an environment error."""
    try:
        import timm  # noqa: F401
    except ModuleNotFoundError as err:
        raise EnvironmentFailure(
            f"timm:<model> backbones need the timm package ({err})", hint="pip install timm"
        ) from None
    from dmlbench.models import timm_backbone

    return timm_backbone


class BackboneRegistry(Registry[Any]):
    """The BACKBONES table plus each entry's facts; `timm:<model>` names resolve through timm's own list."""

    def __init__(self) -> None:
        super().__init__("backbone")
        self._info: dict[str, BackboneInfo] = {}

    def register(self, name: str, target: str, info: BackboneInfo) -> None:
        """Add `name -> target` with its facts (the one way entries are added)."""
        self.add(name, target)
        self._info[name] = info

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str) and is_timm_name(name):
            return bool(_timm().timm_model_known(name.removeprefix(TIMM_PREFIX)))
        return super().__contains__(name)

    def _unknown(self, name: str, err: UnknownNameError) -> UnknownNameError:
        return UnknownNameError(err.message, hint=f"{err.hint}, or timm:<model> (any timm model)")

    def target(self, name: str) -> str:
        """The "module:attr" of `name`; timm names are checked against timm's list (did-you-mean)."""
        if is_timm_name(name):
            _timm().check_timm_name(name.removeprefix(TIMM_PREFIX))
            return _TIMM_TARGET
        try:
            return super().target(name)
        except UnknownNameError as err:
            raise self._unknown(name, err) from None

    def get(self, name: str) -> Any:
        """The factory of `name` (for timm names, the timm factory bound to the model name)."""
        if is_timm_name(name):
            timm_module = _timm()
            return functools.partial(
                timm_module.timm_backbone, timm_module.check_timm_name(name.removeprefix(TIMM_PREFIX))
            )
        try:
            return super().get(name)
        except UnknownNameError as err:
            raise self._unknown(name, err) from None

    def info(self, name: str) -> BackboneInfo:
        """The facts of `name` (timm's come from the model's pretrained config)."""
        if is_timm_name(name):
            info: BackboneInfo = _timm().timm_info(name.removeprefix(TIMM_PREFIX))
            return info
        self.target(name)  # unknown -> did-you-mean
        if name not in self._info:
            raise ValueError(f"backbone {name!r} was registered without its BackboneInfo")
        return self._info[name]


def resolve_model_defaults(model: ModelConfig, spec_image_size: int, spec_channels: int) -> ModelConfig:
    """A copy of `[model]` with every backbone-dependent default filled (the dataset supplies the rest).

    Image size, channels and preprocessing come from the backbone's facts (timm: its pretrained
    config) unless the config sets them; the resolved values are what a run records, so evaluation
    preprocesses exactly as training did.
    """
    from dmlbench.models import backbone_info

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


def preprocessing(model: ModelConfig) -> Mapping[str, Any]:
    """The resolved preprocessing as keyword arguments of `datasets.torch_data.build_dataset`."""
    return {
        "mean": tuple(model.mean) if model.mean is not None else None,
        "std": tuple(model.std) if model.std is not None else None,
        "interpolation": model.interpolation,
        "crop_pct": model.crop_pct,
    }
