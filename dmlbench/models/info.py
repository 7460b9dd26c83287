"""Backbone facts and the backbone registry: known without importing torch (timm's facts import timm).

Every other package asks these facts (`backbone_info`) instead of testing backbone names, so a new
backbone is one registry line with its facts, and `timm:<model>` names work wherever a name does.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dmlbench.errors import EnvironmentFailure, UnknownNameError
from dmlbench.models.facts import TIMM_PREFIX, BackboneInfo, is_timm_name
from dmlbench.registry import Registry

if TYPE_CHECKING:
    from dmlbench.config import ModelConfig

_TIMM_TARGET = "dmlbench.models.timm_backbone:timm_backbone"


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


def preprocessing(model: ModelConfig) -> Mapping[str, Any]:
    """The resolved preprocessing as keyword arguments of `datasets.torch_data.build_dataset`."""
    return {
        "mean": tuple(model.mean) if model.mean is not None else None,
        "std": tuple(model.std) if model.std is not None else None,
        "interpolation": model.interpolation,
        "crop_pct": model.crop_pct,
    }
