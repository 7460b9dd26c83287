"""Search spaces: the packaged `spaces.toml` (one table per loss), `--space FILE` overrides, strict checks.

A space is a flat mapping from dotted config keys (`optim.lr`, `loss.margin`, `sampler.samples_per_class`)
to dimensions; those keys are also the Optuna parameter names, so a trial's parameters read like `--set`s.
The batch size of P x K stays fixed: the space searches K and derives P = batch size / K.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dmlbench.errors import ConfigError, require_file
from dmlbench.utils import toml as tomllib

PACKAGED = Path(__file__).with_name("spaces.toml")
KINDS = ("small", "pretrained")
PK_KEY = "sampler.samples_per_class"
# The optimizer dimensions a space may search (the other OptimConfig fields are not hyperparameters).
OPTIM_KEYS = ("lr", "weight_decay", "head_lr_multiplier", "momentum", "grad_clip")


class Dimension(BaseModel):
    """One searched parameter: a float/int range (optionally log-scaled) or a list of choices."""

    # inf/nan bounds would reach Optuna's samplers (and every trial) as values no config accepts.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[bool | int | float | str, ...] | None = None

    @model_validator(mode="after")
    def _check(self) -> Dimension:
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low/high, not both")
            if not self.choices:
                raise ValueError("choices is empty")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a range needs both low and high")
        if not self.low < self.high:
            raise ValueError(f"low {self.low} must be below high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")
        if self.integer and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError("an integer range needs integer low and high")
        return self

    def suggest(self, trial: Any, name: str) -> Any:
        """Draw this dimension from an Optuna trial."""
        if self.choices is not None:
            return trial.suggest_categorical(name, list(self.choices))
        assert self.low is not None and self.high is not None
        if self.integer:
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(name, float(self.low), float(self.high), log=self.log)

    def candidates(self) -> list[Any]:
        """The values to try before a study starts: every choice, or both ends of the range."""
        if self.choices is not None:
            return list(self.choices)
        assert self.low is not None and self.high is not None
        if self.integer:
            return [int(self.low), int(self.high)]
        return [float(self.low), float(self.high)]

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        scale = " (log)" if self.log else ""
        return f"{self.low:g}..{self.high:g}{scale}"


class _SamplerTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    samples_per_class: Dimension | None = None
    batch_size: int | None = Field(None, gt=1)


class SpaceFile(BaseModel):
    """The schema of a spaces TOML file (the packaged one or `--space FILE`)."""

    model_config = ConfigDict(extra="forbid")

    optim: dict[str, dict[str, Dimension]] = Field(default_factory=dict)
    sampler: _SamplerTable | None = None
    loss: dict[str, dict[str, Dimension]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> SpaceFile:
        for kind, table in self.optim.items():
            if kind not in KINDS:
                raise ValueError(f"optim.{kind}: backbone kind must be one of {', '.join(KINDS)}")
            unknown = sorted(set(table) - set(OPTIM_KEYS))
            if unknown:
                raise ValueError(f"optim.{kind}.{unknown[0]}: not a searchable optimizer key ({', '.join(OPTIM_KEYS)})")
        return self


def read_space_file(path: Path) -> SpaceFile:
    """Parse and validate one spaces file; every problem is one ConfigError line."""
    require_file(path, what="search space file", hint="check the --space path")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}", hint="fix the file's syntax") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read search space {path}: {err}", hint="check the --space path") from None
    try:
        return SpaceFile.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "file"
        raise ConfigError(
            f"invalid search space {path}: {where}: {first['msg']}",
            hint="see docs/tuning.md: each dimension is {low, high, log} or {choices = [...]}",
        ) from None


def merged_space_file(override: Path | None) -> SpaceFile:
    """The packaged spaces, with every table of `override` replacing the packaged table of the same name."""
    packaged = read_space_file(PACKAGED)
    if override is None:
        return packaged
    user = read_space_file(override)
    if not user.model_fields_set:
        raise ConfigError(f"search space {override} defines no tables", hint="see docs/tuning.md for the format")
    data = packaged.model_dump(exclude_none=True)
    given = user.model_dump(exclude_none=True, exclude_unset=True)
    for section in ("optim", "loss"):
        data[section].update(given.get(section, {}))
    if "sampler" in given:
        data["sampler"] = given["sampler"]
    return SpaceFile.model_validate(data)


@dataclass(frozen=True)
class Space:
    """The dimensions one study searches, plus the fixed batch size of its P x K."""

    dimensions: dict[str, Dimension]
    batch_size: int

    def suggest(self, trial: Any) -> dict[str, Any]:
        """The trial's parameters, keyed by dotted config key."""
        return {name: dim.suggest(trial, name) for name, dim in self.dimensions.items()}

    def overrides(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Dotted config keys -> values for `params` (K of P x K also sets P = batch size / K)."""
        values = dict(params)
        if PK_KEY in values:
            values["sampler.classes_per_batch"] = self.batch_size // int(values[PK_KEY])
        return values

    def describe(self) -> dict[str, str]:
        return {name: dim.describe() for name, dim in self.dimensions.items()}


def build_space(
    file: SpaceFile,
    *,
    loss: str,
    loss_parameters: Sequence[str],
    backbone_kind: str,
    batch_size: int,
    min_samples_per_class: int,
    min_train_classes: int,
    fixed: Sequence[str] = (),
    source: str = "the search space",
    declared: object = None,
) -> Space:
    """The dimensions of `loss` on a backbone kind: checked against the loss's parameters and the data.

    `fixed` are dotted keys the user set (`--set`): they are not searched. Only the K that divide the batch
    size, leave P >= 2 classes and fit the smallest training fold (`min_train_classes`) are searched.
    """
    fixed_keys = set(fixed)
    dims: dict[str, Dimension] = {}
    for name, dim in file.optim.get(backbone_kind, {}).items():
        dims[f"optim.{name}"] = dim
    table = file.loss.get(loss)
    if table is None and declared is not None:
        # A loss of your own may carry its space as a `search_space` class attribute (docs/plugins.md);
        # a [loss.<name>] table of --space FILE still wins.
        table, source = declared_space(loss, declared), f"the search_space of {loss}"
    if table is None and not dims:
        raise ConfigError(
            f"{source} has no [loss.{loss}] table and nothing else to search",
            hint=f"write a --space FILE with [loss.{loss}] (see docs/tuning.md)",
        )
    accepted = sorted(set(loss_parameters) - {"embedding_dim", "num_classes"})
    for name, dim in (table or {}).items():
        if name not in accepted:
            from dmlbench.registry import did_you_mean

            raise ConfigError(
                f"{source}: loss {loss!r} has no parameter {name!r} (in [loss.{loss}])",
                hint=f"{did_you_mean(name, accepted)}parameters: {', '.join(accepted) or 'none'}",
            )
        dims[f"loss.{name}"] = dim
    sampler = file.sampler
    pk_fixed = bool(fixed_keys & {PK_KEY, "sampler.classes_per_batch"})
    if sampler is not None and sampler.samples_per_class is not None and not pk_fixed:
        batch = sampler.batch_size or batch_size
        choices = _pk_choices(sampler.samples_per_class, batch, min_samples_per_class, min_train_classes)
        if not choices:
            raise ConfigError(
                f"{source}: no P x K batch of {batch} images fits (K {sampler.samples_per_class.describe()}, "
                f"at least {min_samples_per_class} per class, at most {min_train_classes} classes per fold)",
                hint="set the batch with --set sampler.classes_per_batch=P --set sampler.samples_per_class=K",
            )
        dims[PK_KEY] = Dimension(choices=tuple(choices))
        batch_size = batch
    dims = {name: dim for name, dim in dims.items() if name not in fixed_keys}
    if not dims:
        hint = "add dimensions to the space (docs/tuning.md)"
        raise ConfigError(
            f"{source} leaves nothing to search for loss {loss!r}",
            hint=hint + (", or drop the --set values that fix them" if fixed_keys else ""),
        )
    return Space(dimensions=dims, batch_size=batch_size)


def declared_space(loss: str, declared: object) -> dict[str, Dimension]:
    """A loss class's `search_space` attribute ({param: {low, high, log} | {choices}}) as checked dimensions."""
    if not isinstance(declared, Mapping):
        raise ConfigError(
            f"the search_space of loss {loss!r} is a {type(declared).__name__}, not a mapping",
            hint='search_space = {"margin": {"low": 0.1, "high": 1.0}}',
        )
    dims: dict[str, Dimension] = {}
    for name, spec in declared.items():
        try:
            dims[str(name)] = Dimension.model_validate(spec)
        except ValidationError as err:
            raise ConfigError(
                f"the search_space of loss {loss!r}: {name}: {err.errors()[0]['msg']}",
                hint="each dimension is {low, high, log} or {choices = [...]} (docs/tuning.md)",
            ) from None
    return dims


def _pk_choices(dim: Dimension, batch: int, min_k: int, max_p: int) -> list[int]:
    if dim.choices is not None:
        candidates = [int(c) for c in dim.choices if isinstance(c, int) and not isinstance(c, bool)]
    else:
        assert dim.low is not None and dim.high is not None
        candidates = list(range(int(dim.low), int(dim.high) + 1))
    return [k for k in candidates if k >= max(1, min_k) and batch % k == 0 and 2 <= batch // k <= max_p]
