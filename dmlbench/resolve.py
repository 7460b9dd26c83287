"""Resolve a TrainConfig against its dataset: every `None` ("the dataset's default") filled in.

The resolved config is what a run directory stores and what every later reader (evaluate, report,
tune) sees, so the defaults applied here are part of a run's identity.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from dmlbench.config import LossConfig, TrainConfig
from dmlbench.errors import ConfigError
from dmlbench.paths import check_name
from dmlbench.registry import did_you_mean


class SpecLike(Protocol):
    """The DatasetSpec fields a config resolves from (the datasets package provides the real class)."""

    @property
    def name(self) -> str: ...
    @property
    def backbone(self) -> str: ...
    @property
    def image_size(self) -> int: ...
    @property
    def channels(self) -> int: ...
    @property
    def default_batch_classes(self) -> int: ...
    @property
    def default_batch_per_class(self) -> int: ...


# Defaults per backbone kind. The image-benchmark values follow the paper's protocol as recalled in
# docs (losses.md §7, UNVERIFIED): RMSprop, lr 1e-5, 10x on the new embedding layer.
# The small CNN trains from scratch, where that lr would barely move in a few epochs.
_KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "small": {"optim": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "head_lr_multiplier": 1.0, "epochs": 10},
    "pretrained": {"optim": "rmsprop", "lr": 1e-5, "weight_decay": 0.0, "head_lr_multiplier": 10.0, "epochs": 40},
}


def backbone_slug(backbone: str) -> str:
    """A backbone name as part of a folder name: `timm:vit_small_patch16_224.dino` -> `timm-vit_small...`."""
    from dmlbench.registry import name_slug

    return name_slug(backbone)


def resolve_config(cfg: TrainConfig, spec: SpecLike) -> TrainConfig:
    """Fill every `None` from the dataset spec and the loss registry; check the loss's keyword arguments."""
    from dmlbench.losses import LOSSES

    if spec.name != cfg.dataset:
        raise ValueError(f"spec {spec.name!r} does not describe dataset {cfg.dataset!r}")
    resolved = cfg.model_copy(deep=True)
    model, optim, schedule, sampler = resolved.model, resolved.optim, resolved.schedule, resolved.sampler

    from dmlbench.models import backbone_info, resolve_model_defaults

    model.backbone = model.backbone or spec.backbone
    info = backbone_info(model.backbone)  # unknown backbone -> did-you-mean now, not mid-run
    kind = "pretrained" if info.pretrained_by_default else "small"
    defaults = _KIND_DEFAULTS[kind]
    resolved.model = model = resolve_model_defaults(model, spec.image_size, spec.channels)

    loss_cls = LOSSES.get(resolved.loss.name)
    known = LOSSES.parameters(resolved.loss.name)
    context = {"embedding_dim", "num_classes"}
    given = resolved.loss.kwargs()
    unknown = sorted(set(given) - set(known) - context)
    accepted = sorted(set(_signature_names(loss_cls)) - context)
    if unknown:
        raise ConfigError(
            f"loss {resolved.loss.name!r} has no parameter {unknown[0]!r}",
            hint=f"{did_you_mean(unknown[0], accepted)}parameters: {', '.join(accepted) or 'none'}",
        )
    for name, value in given.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"loss.{name} = {value} is not a finite number", hint=f"give loss.{name} a finite value")
    # A key the [loss] schema declares keeps the schema's default (what every stored config has recorded).
    declared = set(LossConfig.model_fields)
    filled = {k: v for k, v in known.items() if k not in context and k not in declared and v is not None}
    filled.update(given)
    resolved.loss = LossConfig.model_validate({"name": resolved.loss.name, **filled})
    if model.normalize is None:
        model.normalize = bool(getattr(loss_cls, "expects_normalized", True))

    sampler.classes_per_batch = sampler.classes_per_batch or _fillable_classes(spec, resolved)
    sampler.samples_per_class = sampler.samples_per_class or spec.default_batch_per_class
    optim.name = optim.name or defaults["optim"]
    # A dataset may set its own lr and epochs (measured for it: docs/datasets.md), else the backbone kind's.
    dataset_lr, dataset_epochs = getattr(spec, "default_lr", None), getattr(spec, "default_epochs", None)
    optim.lr = optim.lr if optim.lr is not None else (dataset_lr or defaults["lr"])
    if optim.weight_decay is None:
        optim.weight_decay = defaults["weight_decay"]
    if optim.head_lr_multiplier is None:
        optim.head_lr_multiplier = defaults["head_lr_multiplier"]
    if schedule.epochs is None:
        schedule.epochs = dataset_epochs or defaults["epochs"]
    if resolved.run_id is None:
        backbone_name = backbone_slug(model.backbone or "")
        from dmlbench.registry import name_slug

        loss_name = name_slug(resolved.loss.name)
        resolved.run_id = f"{resolved.dataset}-{loss_name}-{backbone_name}-seed{resolved.seed}"
    check_name(resolved.run_id, "run_id")
    return resolved


def _fillable_classes(spec: SpecLike, cfg: TrainConfig) -> int:
    """The dataset's P, lowered when held-out validation classes leave fewer training classes than P
    (a 12-class folder with --val-classes 0.2 must still train without flags)."""
    from dmlbench.datasets.splits import held_out_classes

    wanted = int(spec.default_batch_classes)
    counts = getattr(spec, "expect_classes", None) or {}
    n_train = int(counts.get("train") or 0)
    if not n_train or cfg.validation.val_classes <= 0:
        return wanted
    held_out = held_out_classes(range(n_train), cfg.validation.val_classes, cfg.seed)
    return max(2, min(wanted, n_train - len(held_out)))


def _signature_names(factory: Any) -> list[str]:
    import inspect

    return [
        p.name
        for p in inspect.signature(factory).parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
