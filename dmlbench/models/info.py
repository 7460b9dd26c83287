"""Backbone facts and the backbone registry: known without importing torch (timm's facts import timm).

Every other package asks these facts (`backbone_info`) instead of testing backbone names, so a new
backbone is one registry line with its facts. Names resolve through the registry's scheme table
(dmlbench/registry.py): `timm:<model>`, `path/to/file.py:Attr`, `package.module:Attr` and the
`dmlbench.backbones` entry-point group work wherever a built-in name does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dmlbench.errors import EnvironmentFailure
from dmlbench.models.facts import TIMM_PREFIX, BackboneInfo
from dmlbench.registry import Registry, Scheme

if TYPE_CHECKING:
    from dmlbench.config import ModelConfig

# A backbone of your own trains from scratch at the dataset's size and channels unless its class says
# otherwise with a `backbone_info = BackboneInfo(...)` attribute (docs/plugins.md).
PLUGIN_INFO = BackboneInfo(pretrained_by_default=False, channels_last=False)


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


def timm_factory(model: str) -> Any:
    """The `timm:` scheme's resolver: the timm factory bound to a checked model name (did-you-mean)."""
    import functools

    timm_module = _timm()
    return functools.partial(timm_module.timm_backbone, timm_module.check_timm_name(model))


class BackboneRegistry(Registry[Any]):
    """The BACKBONES table plus each built-in entry's facts; other names' facts come from their scheme."""

    def __init__(self) -> None:
        super().__init__(
            "backbone",
            schemes=[
                Scheme(
                    TIMM_PREFIX.rstrip(":"),
                    "dmlbench.models.info:timm_factory",
                    "timm:<model> (any timm model)",
                    target="dmlbench.models.timm_backbone:timm_backbone",
                )
            ],
            entry_point_group="dmlbench.backbones",
            plugins=True,
        )
        self._info: dict[str, BackboneInfo] = {}

    def register(self, name: str, target: str, info: BackboneInfo) -> None:
        """Add `name -> target` with its facts (the one way built-in entries are added)."""
        self.add(name, target)
        self._info[name] = info

    def info(self, name: str) -> BackboneInfo:
        """The facts of `name`: registered, timm's pretrained config, or a plugin's `backbone_info`."""
        kind = self.name_kind(name)  # unknown -> did-you-mean
        if kind == "builtin":
            return self._info[name]
        if kind == "scheme":
            self.get(name)  # an unknown timm model fails here, with timm's did-you-mean
            info: BackboneInfo = _timm().timm_info(name.removeprefix(TIMM_PREFIX))
            return info
        declared = getattr(self.get(name), "backbone_info", None)
        if declared is None:
            return PLUGIN_INFO
        if not isinstance(declared, BackboneInfo):
            from dmlbench.errors import ConfigError

            raise ConfigError(
                f"backbone {name!r} has a backbone_info that is not a BackboneInfo",
                hint="backbone_info = dmlbench.models.BackboneInfo(pretrained_by_default=..., channels_last=...)",
            )
        return declared


def preprocessing(model: ModelConfig) -> Mapping[str, Any]:
    """The resolved preprocessing as keyword arguments of `datasets.torch_data.build_dataset`."""
    return {
        "mean": tuple(model.mean) if model.mean is not None else None,
        "std": tuple(model.std) if model.std is not None else None,
        "interpolation": model.interpolation,
        "crop_pct": model.crop_pct,
    }
