"""The user's images (a folder or a CSV) and the run's preprocessing applied to them.

The preprocessing is the one evaluation applies to the run's dataset (`datasets.torch_data`), so an image
embedded here gets the vector `evaluate` would give it: array datasets (digits, glyphs, ...) scale the
whole image to the model's side, `(x / 255 - mean) / std` with mean = std = 0.5 unless the run set its
own; image-file datasets resize the shorter side and centre-crop, with ImageNet statistics by default.
"""

from __future__ import annotations

import csv
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from dmlbench.datasets.images import IMAGE_SUFFIXES
from dmlbench.errors import MissingInputError, UsageError, first_line
from dmlbench.events import Event, EventHandler, emit

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from dmlbench.config import TrainConfig
    from dmlbench.datasets.prepared import PreparedDataset

# x / 127.5 - 1, the array datasets' default scaling, written as (x / 255 - mean) / std
ARRAY_MEAN, ARRAY_STD = 0.5, 0.5
Layout = Literal["array", "files"]
_SUFFIX_HINT = f"images end in {', '.join(sorted(IMAGE_SUFFIXES))}"


@dataclass(frozen=True)
class Preprocessing:
    """What turns an image into the model's input; recorded in exported files so others can reproduce it.

    `layout` "array": the whole image is resized to `image_size` x `image_size`; "files": the shorter side
    is resized to `resize_side`, then the centre `image_size` x `image_size` is cropped. Then pixels are
    scaled to [0, 1] and standardised with `mean` / `std` per channel.
    """

    layout: Layout
    image_size: int
    resize_side: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str
    crop_pct: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (lists instead of tuples)."""
        fields = asdict(self)
        return {key: list(value) if isinstance(value, tuple) else value for key, value in fields.items()}


def run_preprocessing(cfg: TrainConfig, prepared: PreparedDataset) -> Preprocessing:
    """The preprocessing evaluation applies to `prepared` for a run with the resolved config `cfg`."""
    from dmlbench.datasets.torch_data import IMAGENET_MEAN, IMAGENET_STD, per_channel, resize_side

    model = cfg.model
    native = prepared.info.get("image_size") or [None]
    if prepared.is_array:
        channels = int(model.in_channels or prepared.info.get("channels") or 1)
        size = int(model.image_size or native[0] or 0)
        if size < 1:
            raise UsageError(
                f"cannot tell the input size of {prepared.name}'s images", hint="re-run `dmlbench prepare`"
            )
        mean = per_channel(model.mean, channels) if model.mean is not None else (ARRAY_MEAN,) * channels
        std = per_channel(model.std, channels) if model.std is not None else (ARRAY_STD,) * channels
        return Preprocessing("array", size, size, channels, mean, std, model.interpolation or "bilinear")
    channels = int(model.in_channels or 3)
    if model.image_size is None:
        raise UsageError(f"the run's config has no model.image_size for {prepared.name}", hint="retrain the run")
    size = int(model.image_size)
    return Preprocessing(
        "files",
        size,
        resize_side(size, model.crop_pct),
        channels,
        per_channel(model.mean or IMAGENET_MEAN, channels),
        per_channel(model.std or IMAGENET_STD, channels),
        model.interpolation or "bilinear",
        model.crop_pct,
    )


@dataclass(frozen=True)
class ImageList:
    """Image files to embed, with labels when the source gives them (class folders, a CSV `label` column).

    `labels` index into `class_names` when names were given as text; otherwise they are the CSV's ids.
    """

    paths: list[Path]
    labels: np.ndarray | None
    class_names: list[str] | None


def list_images(source: str | os.PathLike[str]) -> ImageList:
    """The images of a file, a folder (recursive) or a CSV with a `path` column (and optionally `label`).

    A folder whose images all sit in subfolders is read as class folders: the first-level folder name is
    the label (names sorted, ids 0..n-1). CSV paths are absolute or relative to the CSV's folder.
    """
    root = Path(source)
    if not root.exists():
        raise MissingInputError(f"{root} does not exist", hint="pass an image, a folder of images or a CSV")
    if root.is_file() and root.suffix.lower() == ".csv":
        return _from_csv(root)
    if root.is_file():
        if root.suffix.lower() not in IMAGE_SUFFIXES:
            raise UsageError(
                f"{root} is neither an image nor a CSV", hint=f"images end in {', '.join(sorted(IMAGE_SUFFIXES))}"
            )
        return ImageList([root], None, None)
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise MissingInputError(f"{root} holds no images", hint=_SUFFIX_HINT)
    relative = [p.relative_to(root) for p in paths]
    if any(len(r.parts) < 2 for r in relative):
        return ImageList(paths, None, None)
    folders = [r.parts[0] for r in relative]
    names = sorted(set(folders))
    ids = {name: i for i, name in enumerate(names)}
    return ImageList(paths, np.array([ids[f] for f in folders], dtype=np.int64), names)


def _from_csv(path: Path) -> ImageList:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (UnicodeDecodeError, csv.Error) as err:
        raise UsageError(f"cannot read {path} as CSV: {err}", hint="save it as UTF-8 CSV with a header") from None
    if not rows or "path" not in rows[0]:
        raise UsageError(f"{path} has no `path` column (or no rows)", hint="the header needs `path` (and `label`)")
    paths = [Path(row["path"]) if Path(row["path"]).is_absolute() else path.parent / row["path"] for row in rows]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise MissingInputError(
            f"{len(missing)} image(s) listed in {path} do not exist (first: {missing[0]})",
            hint="paths are absolute or relative to the CSV's folder",
        )
    if "label" not in rows[0]:
        return ImageList(paths, None, None)
    texts = [(row["label"] or "").strip() for row in rows]
    if any(not t for t in texts):
        raise UsageError(f"{path} has rows with an empty label", hint="give every row a label, or drop the column")
    try:
        return ImageList(paths, np.array([int(t) for t in texts], dtype=np.int64), None)
    except ValueError:
        names = sorted(set(texts))
        ids = {name: i for i, name in enumerate(names)}
        return ImageList(paths, np.array([ids[t] for t in texts], dtype=np.int64), names)


def _unreadable(path: Path, err: Exception) -> MissingInputError:
    return MissingInputError(
        f"cannot read image {path}: {first_line(err)}",
        hint="remove or replace that file (it is not an image PIL can open)",
    )


def images_dataset(
    images: ImageList, pre: Preprocessing, *, on_event: EventHandler | None = None
) -> Dataset[tuple[Any, int]]:
    """A torch Dataset of (model input, label or -1) over `images`, preprocessed as `pre` says."""
    import pandas as pd
    from PIL import Image, UnidentifiedImageError

    from dmlbench.datasets.prepared import PreparedDataset
    from dmlbench.datasets.torch_data import ArrayImageDataset, ImageFileDataset

    labels = images.labels if images.labels is not None else np.full(len(images.paths), -1, dtype=np.int64)
    if pre.layout == "array":
        # The array pipeline works on one uint8 stack; each image is scaled to the model's side first.
        mode = "L" if pre.channels == 1 else "RGB"
        resample = Image.Resampling[pre.interpolation.upper()]
        pixels = np.empty((len(images.paths), pre.image_size, pre.image_size, 1 if mode == "L" else 3), np.uint8)
        emit(on_event, Event("start", "read images", total=float(len(images.paths)), unit="img"))
        for i, path in enumerate(images.paths):
            try:
                with Image.open(path) as raw:
                    image = raw.convert(mode).resize((pre.image_size, pre.image_size), resample)
            except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as err:
                raise _unreadable(path, err) from None
            pixels[i] = np.asarray(image).reshape(pixels.shape[1:])
            emit(on_event, Event("advance", "read images", amount=1.0))
        emit(on_event, Event("finish", "read images"))
        # The default scaling goes through the array pipeline's own x / 127.5 - 1, bit for bit.
        default = pre.mean == (ARRAY_MEAN,) * pre.channels and pre.std == (ARRAY_STD,) * pre.channels
        return ArrayImageDataset(
            pixels,
            labels,
            image_size=pre.image_size,
            channels=pre.channels,
            mean=None if default else pre.mean,
            std=None if default else pre.std,
            interpolation=pre.interpolation,
        )

    class UserImageFiles(ImageFileDataset):
        """The evaluation transform over the user's files; an unreadable file is named as the user's."""

        def load(self, i: int) -> Image.Image:
            path = Path(self.paths[i])
            try:
                with Image.open(path) as raw:
                    return raw.convert("RGB" if self.channels == 3 else "L")
            except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as err:
                raise _unreadable(path, err) from None

    frame = pd.DataFrame({"path": [str(p.resolve()) for p in images.paths], "label": labels})
    holder = PreparedDataset(name="images", root=Path("/"), info={})
    return UserImageFiles(
        holder,
        frame,
        train=False,
        image_size=pre.image_size,
        bbox_crop=False,
        channels=pre.channels,
        mean=pre.mean,
        std=pre.std,
        interpolation=pre.interpolation,
        crop_pct=pre.crop_pct,
    )
