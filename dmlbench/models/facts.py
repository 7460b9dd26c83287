"""What a backbone is, before it is built: its facts and the `timm:<model>` naming rule (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass

TIMM_PREFIX = "timm:"


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
