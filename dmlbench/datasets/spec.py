"""`DatasetSpec`: the schema of one `[table]` of datasets.toml, validated strictly when it loads."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, field_validator, model_validator

from dmlbench.config import MAX_BATCH, MAX_EPOCHS, MAX_IMAGE_SIZE

Protocol = Literal["class-split", "given-split", "query-gallery"]
FileFormat = Literal["tgz", "tar", "zip", "gz", "mat", "file"]

_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"


class FileSpec(BaseModel):
    """One file a dataset is made from: where to get it and how to recognise it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="file name on disk (also what `--from DIR` looks for)")
    format: FileFormat
    urls: tuple[str, ...] = Field(default=(), description="mirrors, tried in order; empty = manual download only")
    size: int | None = Field(default=None, gt=0)
    md5: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    # Decompressed content of a .gz: repackaged copies (e.g. Debian's) differ in their .gz bytes only.
    content_size: int | None = Field(default=None, gt=0)
    content_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if "/" in value or "\\" in value or value in {".", ".."}:
            raise ValueError("must be a plain file name, not a path")
        return value

    @field_validator("urls")
    @classmethod
    def _http_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http(s) URL")
        return value


class DatasetSpec(BaseModel):
    """One dataset of the catalog. `name` comes from the table name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME_PATTERN)
    title: str = Field(min_length=1)
    source: str = Field(description="raw-format reader, a key of dmlbench.datasets.sources.SOURCES")
    protocol: Protocol
    backbone: str = Field(description="a BACKBONES name, a plugin's, or timm:<model>")
    image_size: int = Field(gt=0, le=MAX_IMAGE_SIZE, description="side of the square network input")
    channels: Literal[1, 3]
    recall_k: tuple[int, ...] = Field(min_length=1)
    default_batch_classes: int = Field(gt=0, le=MAX_BATCH)
    default_batch_per_class: int = Field(gt=1, le=MAX_BATCH)
    default_epochs: int | None = Field(
        None, gt=0, le=MAX_EPOCHS, description="training epochs when the config sets none"
    )
    default_lr: float | None = Field(None, gt=0, description="learning rate when the config sets none")
    train_classes: tuple[int, int] | None = None
    test_classes: tuple[int, int] | None = None
    split_rule: Literal["ranges", "alternate", "source"] = Field(
        "ranges",
        description="class-split: 'ranges' = every id in each range; 'alternate' = interleaved ids, each split "
        "taking the ids of its range with the parity its range starts on (e.g. train [0, 348], test [1, 349]); "
        "'source' = the source assigns each image's split itself (datasets from the user's files: no ranges)",
    )
    # Counts are checked after a build; a negative one could never match and would blame the download.
    expect_images: dict[str, NonNegativeInt] = Field(
        default_factory=dict, description="exact images per split, checked"
    )
    expect_classes: dict[str, NonNegativeInt] = Field(
        default_factory=dict, description="exact classes per split, checked"
    )
    files: tuple[FileSpec, ...] = ()
    homepage: str = ""
    citation: str = ""
    notes: str = ""
    params: dict[str, int | float | str] = Field(default_factory=dict, description="source-specific settings")

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str) -> str:
        from dmlbench.models.facts import is_timm_name
        from dmlbench.models.registry import BACKBONES

        # timm names are checked against timm's own list when a run resolves them (that imports torch)
        if is_timm_name(value) or value in BACKBONES:
            return value
        from dmlbench.registry import did_you_mean

        raise ValueError(
            f"unknown backbone {value!r}; {did_you_mean(value, BACKBONES.names())}"
            f"known: {', '.join(BACKBONES.names())} or timm:<model>"
        )

    @field_validator("recall_k")
    @classmethod
    def _increasing(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(k <= 0 for k in value) or list(value) != sorted(set(value)):
            raise ValueError("must be positive and strictly increasing")
        return value

    @field_validator("train_classes", "test_classes")
    @classmethod
    def _ordered_range(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and value[0] > value[1]:
            raise ValueError("must be [first, last] with first <= last")
        return value

    @field_validator("expect_images", "expect_classes")
    @classmethod
    def _known_splits(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = set(value) - {"train", "test", "query", "gallery"}
        if unknown:
            raise ValueError(f"unknown split(s) {sorted(unknown)}; use train, test, query, gallery")
        return value

    @model_validator(mode="after")
    def _protocol_needs(self) -> DatasetSpec:
        if self.protocol == "class-split" and (self.train_classes is None) != (self.test_classes is None):
            raise ValueError("protocol 'class-split' needs both train_classes and test_classes, or neither")
        if self.protocol == "class-split" and self.train_classes is None and self.split_rule != "source":
            raise ValueError("protocol 'class-split' needs train_classes and test_classes (or split_rule 'source')")
        if self.protocol == "class-split" and self.train_classes is not None and self.test_classes is not None:
            (a, b), (c, d) = self.train_classes, self.test_classes
            if self.split_rule == "alternate":
                if a % 2 == c % 2:
                    raise ValueError(
                        "split_rule 'alternate' needs train_classes and test_classes to start on ids of "
                        "different parity (e.g. [0, 348] and [1, 349])"
                    )
            elif not (b < c or d < a):
                raise ValueError("train_classes and test_classes overlap; a DML split must be class-disjoint")
        elif self.split_rule not in ("ranges", "source"):
            raise ValueError("split_rule applies to protocol 'class-split' only")
        names = [f.name for f in self.files]
        if len(names) != len(set(names)):
            raise ValueError("two files share one name")
        return self

    @property
    def splits(self) -> tuple[str, ...]:
        """Split names this protocol produces."""
        return ("train", "query", "gallery") if self.protocol == "query-gallery" else ("train", "test")

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of this spec (recorded in prepared.json)."""
        payload: dict[str, Any] = self.model_dump(mode="json")
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
