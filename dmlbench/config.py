"""TrainConfig: the schema of an experiment, its TOML form, and how flags, `--set` and files combine.

Precedence: explicit flags > `--set dotted.key=value` > `--config` file > schema defaults.
`None` in a field means "the dataset's default"; `resolve_config` fills every such field from the
DatasetSpec and the loss registry, and the resolved config is what a run directory stores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dmlbench.errors import ConfigError, from_os_error, require_file
from dmlbench.registry import did_you_mean
from dmlbench.utils import toml as tomllib
from dmlbench.utils.dotted import flatten

# Bounds every numeric setting shares with its consumers, so a value is refused where it is parsed, not
# deep inside a library: faiss's k-means seed is a C int (and numpy's seeds stop at 2**32), step and
# epoch counters go to int32 fields of TensorBoard and the LR schedulers; sizes beyond these allocate
# more memory than any machine has.
MAX_SEED = 2**31 - 1
MAX_SEED_COUNT = 1_000  # seeds of one grid cell or one study's finals: each is a run folder and a training
MAX_COUNT = 2**31 - 1  # steps, epochs x steps, intervals
MAX_EPOCHS = 1_000_000
MAX_BATCH = 65_536  # images, classes or images per class in one batch
MAX_EMBEDDING_DIM = 65_536
MAX_IMAGE_SIZE = 8_192
MAX_LOADER_WORKERS = 256


class _Section(BaseModel):
    # inf/nan are never meaningful settings; rejecting them here means a run folder is never created for them.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ModelConfig(_Section):
    """`[model]`: the embedder.

    `backbone` is a registered name or `timm:<model>[.<tag>]`. `mean`, `std`, `interpolation` and
    `crop_pct` are the input preprocessing; a resolved config records them when the backbone has its
    own (timm's pretrained config), so evaluation preprocesses exactly as training did.
    """

    backbone: str | None = None
    embedding_dim: int = Field(64, gt=0, le=MAX_EMBEDDING_DIM)
    pretrained: bool | None = None
    weights: str | None = None
    normalize: bool | None = None
    image_size: int | None = Field(None, gt=0, le=MAX_IMAGE_SIZE)
    in_channels: int | None = Field(None, ge=1, le=3)
    freeze_bn: bool | None = None
    freeze_backbone: bool = Field(False, description="train only the embedding head; the trunk stays as loaded")
    feature_norm: Literal["none", "batch"] | None = Field(
        None, description="standardise pooled features over the training batch before the head"
    )
    mean: list[float] | None = Field(None, min_length=1, max_length=3)
    std: list[Annotated[float, Field(gt=0)]] | None = Field(None, min_length=1, max_length=3)
    interpolation: Literal["bilinear", "bicubic", "nearest"] | None = None
    crop_pct: float | None = Field(None, gt=0, le=2, description="image_size / resize side for eval crops")


class LossConfig(BaseModel):
    """`[loss]`: `name` picks the LOSSES entry; every other key is a keyword argument of that loss.

    `margin_decay` / `margin_decay_every` are the clustering loss's γ schedule (that loss documents and runs
    it); they are declared here only because every config.toml has recorded them, so old run folders still
    compare equal. Like any declared key they reach the loss only when set away from their default.
    """

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    name: str = "clustering"
    margin_decay: float | None = Field(None, gt=0, le=1)
    margin_decay_every: int = Field(0, ge=0, le=MAX_COUNT, description="steps between decays; 0 = once per epoch")

    def kwargs(self) -> dict[str, Any]:
        """The loss's keyword arguments: every extra key, and each declared one (but `name`) not at its default."""
        declared = {
            key: getattr(self, key)
            for key, field in type(self).model_fields.items()
            if key != "name" and getattr(self, key) != field.default
        }
        return {**declared, **(self.model_extra or {})}


class SamplerConfig(_Section):
    """`[sampler]`: class-balanced P x K batches (P classes, K images each), or `kind = "c-of-m"`:
    `batch_size` images from `classes_per_batch` classes, as even as the sizes allow (the paper's m and C)."""

    kind: Literal["pk", "c-of-m"] = "pk"
    classes_per_batch: int | None = Field(None, gt=0, le=MAX_BATCH)
    samples_per_class: int | None = Field(None, gt=0, le=MAX_BATCH)
    batch_size: int | None = Field(None, gt=0, le=MAX_BATCH, description="images per batch, for kind = 'c-of-m'")


class OptimConfig(_Section):
    """`[optim]`: optimizer, learning rates and gradient clipping."""

    name: Literal["rmsprop", "adamw", "sgd"] | None = None
    lr: float | None = Field(None, gt=0)
    weight_decay: float | None = Field(None, ge=0)
    momentum: float = Field(0.9, ge=0)
    head_lr_multiplier: float | None = Field(None, gt=0)
    grad_clip: float | None = Field(None, gt=0)


class ScheduleConfig(_Section):
    """`[schedule]`: how long, the lr shape, precision and checkpointing."""

    epochs: int | None = Field(None, gt=0, le=MAX_EPOCHS)
    steps: int | None = Field(
        None, gt=0, le=MAX_COUNT, description="stop after this many optimizer steps (overrides epochs)"
    )
    warmup_steps: int = Field(0, ge=0, le=MAX_COUNT)
    cosine: bool = False
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    channels_last: bool | None = None
    checkpoint_every: int = Field(
        100, gt=0, le=MAX_COUNT, description="steps between last.pt saves (also saved every epoch)"
    )
    # How the work is spread never changes a result: augmentation is drawn per (seed, epoch, position),
    # so data workers are free to follow the machine ("auto"); the intra-op thread count does change
    # float reductions, so it is a fixed setting of the run, never derived from the cores or the pool.
    num_workers: Annotated[int, Field(ge=0, le=MAX_LOADER_WORKERS)] | Literal["auto"] = Field(
        "auto", description='data-loading processes; "auto" = this process\'s cores minus one (0 for in-memory arrays)'
    )
    threads: int = Field(1, ge=1, le=1024, description="torch intra-op threads of the run (part of its result)")
    decode_cache: bool = Field(True, description="keep image files decoded and resized once, in the dataset folder")


class ValidationConfig(_Section):
    """`[validation]`: model selection on held-out TRAIN classes; the test split is never used."""

    val_classes: float = Field(0.0, ge=0.0, lt=1.0)
    every: int = Field(1, gt=0, le=MAX_EPOCHS)
    metric: str = "recall@1"


class TrainConfig(_Section):
    """A whole experiment. Valid TOML for `dmlbench train --config`."""

    # The embedded zero-shot benchmark: generated, no download, and training matters on it (docs/datasets.md).
    dataset: str = "glyphs"
    seed: int = Field(0, ge=0, le=MAX_SEED)
    run_id: str | None = None
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)


class ConfigKeyError(ConfigError):
    """A value the schema refuses, naming its dotted key (`train.lr`) and where it came from.

    The core knows keys, not flags: a front end that set the key from an option of its own re-words the
    error with `from_source` (the CLI names `--epochs` where this says "the command line").
    """

    def __init__(self, key: str, source: str, reason: str, *, hint: str | None = "fix the value") -> None:
        super().__init__(f"invalid config value for {key!r} in {source}: {reason}", hint=hint)
        self.key, self.source, self.reason = key, source, reason

    def from_source(self, source: str) -> ConfigKeyError:
        """The same error blaming `source` (e.g. "the --epochs option")."""
        return ConfigKeyError(self.key, source, self.reason, hint=self.hint)


# Where load_config's `flags` say a value came from: the front end that passed them knows which option.
COMMAND_LINE = "the command line"


def _config_error(err: ValidationError, source: str | Mapping[str, str]) -> ConfigError:
    first = err.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    if not isinstance(source, str):
        source = source.get(key, source.get("", "the config"))
    if first["type"] == "extra_forbidden":
        parent, _, leaf = key.rpartition(".")
        known = _known_keys(parent)
        return ConfigError(
            f"unknown config key {key!r} in {source}",
            hint=f"{did_you_mean(leaf, known)}keys here: {', '.join(known)}",
        )
    return ConfigKeyError(key, source, first["msg"])


def _known_keys(section: str) -> list[str]:
    model: type[BaseModel] = TrainConfig
    for part in [p for p in section.split(".") if p]:
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def parse_set(item: str) -> tuple[list[str], Any]:
    """Parse one `--set dotted.key=value`; the value is a TOML literal, a bare word is a string."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item!r} is not key=value", hint="e.g. --set optim.lr=1e-4")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        # Unquoted words (`--set optim.name=adamw`) are what people type; anything else is a typo.
        # `@` too: metric names such as recall@4 are words people type unquoted.
        if raw.strip().replace("-", "").replace("_", "").replace(".", "").replace("@", "").isalnum():
            value = raw.strip()
        else:
            raise ConfigError(
                f"--set {item!r}: {raw!r} is not a TOML value", hint='quote strings: key="text"'
            ) from None
    return key.split("."), value


def _set_nested(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {'.'.join(path)}: {part!r} is not a table", hint="check the key")
        node = child
    node[path[-1]] = value


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file into a dict; a missing or malformed file is a user error."""
    require_file(path, what="config file", hint="pass a TOML file to --config")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}", hint="fix the file's syntax") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text file (not UTF-8)", hint="pass a TOML config file") from None
    except OSError as err:
        raise from_os_error(err, doing="cannot read config file") from None


def load_config(
    file: Path | None = None,
    overrides: Sequence[str] = (),
    flags: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """Build a TrainConfig: defaults < `file` < `overrides` (`--set k=v`) < `flags` (dotted keys, None = not given).

    A refused flag value is a ConfigKeyError from `COMMAND_LINE`; the caller knows which option set the key.
    """
    data: dict[str, Any] = read_toml(file) if file is not None else {}
    # Where each key's value came from, so an error blames the flag, --set or file the user wrote.
    sources: dict[str, str] = {"": str(file) if file is not None else "the defaults"}
    if file is not None:
        sources.update(dict.fromkeys(flatten(data), str(file)))
    flag_loss = (flags or {}).get("loss.name")
    file_loss = data.get("loss", {}).get("name", LossConfig().name) if isinstance(data.get("loss"), dict) else None
    if flag_loss is not None and flag_loss != file_loss:
        # The file's loss keyword arguments belong to another loss; `--loss` swaps the whole table.
        data["loss"] = {}
    for item in overrides:
        path, value = parse_set(item)
        _set_nested(data, path, value)
        key = ".".join(path)
        given = [key, *flatten(value, key + ".")] if isinstance(value, Mapping) else [key]
        sources.update(dict.fromkeys(given, f"--set {item}"))
    for key, value in (flags or {}).items():
        if value is not None:
            _set_nested(data, key.split("."), value)
            sources[key] = COMMAND_LINE
    return validate_config(data, sources)


def validate_config(data: Mapping[str, Any], source: str | Mapping[str, str] = "config") -> TrainConfig:
    """Validate a plain dict against the schema, with did-you-mean for unknown keys."""
    try:
        return TrainConfig.model_validate(dict(data))
    except ValidationError as err:
        raise _config_error(err, source) from None


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"cannot write non-finite float {value} to TOML")
    return value


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The config as plain TOML-ready data (None fields are omitted: they mean "default")."""
    data: dict[str, Any] = _plain(cfg.model_dump(mode="python"))  # _plain builds new containers
    return data


def dump_toml(cfg: TrainConfig) -> str:
    """TOML text of `cfg`; loading it back with `load_config` gives an equal config."""
    return tomli_w.dumps(config_to_dict(cfg))


def diff_keys(a: TrainConfig, b: TrainConfig, *, ignore: frozenset[str] = frozenset()) -> list[str]:
    """Dotted keys whose values differ between two configs (for resume/--force decisions)."""
    fa, fb = flatten(config_to_dict(a)), flatten(config_to_dict(b))
    return sorted(k for k in set(fa) | set(fb) if k not in ignore and fa.get(k) != fb.get(k))
