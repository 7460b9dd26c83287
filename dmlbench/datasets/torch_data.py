"""torch Datasets over a prepared dataset: in-memory arrays (fast, vectorised) or image files (PIL).

Array datasets (digits, fashion-mnist, synthetic) keep the uint8 array in memory and offer
`get_batch(indices)`, which builds a whole batch with a few tensor operations; the training loop
uses it so that the data pipeline never limits throughput. Image-file datasets use the standard
ImageNet-style transforms.

A backbone with its own preprocessing (a timm model's pretrained config, recorded in the run's
resolved `[model]`) passes `mean`, `std`, `interpolation` and `crop_pct`; without them the
defaults below apply.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from dmlbench.datasets.prepared import ARRAY_FILE, BOX_COLUMNS, PreparedDataset
from dmlbench.errors import ChecksumError, UsageError
from dmlbench.utils.npy import load_npy

if TYPE_CHECKING:
    import pandas as pd

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_side(image_size: int, crop_pct: float | None = None) -> int:
    """The side images are resized to before cropping: 256 for 224 (the standard ratio), scaled otherwise.

    With a crop ratio (timm's `crop_pct`) the side is `floor(image_size / crop_pct)`, as timm computes it.
    """
    if crop_pct is not None:
        return math.floor(image_size / crop_pct)
    return max(image_size, round(image_size * 256 / 224))


def per_channel(values: Sequence[float], channels: int) -> tuple[float, ...]:
    """Channel statistics for `channels` channels: as given, one value repeated, or RGB averaged to gray."""
    if len(values) == channels:
        return tuple(values)
    if len(values) == 1:
        return tuple(values) * channels
    if len(values) == 3 and channels == 1:
        return (sum(values) / 3,)
    raise UsageError(
        f"{len(values)} normalisation values for {channels}-channel images", hint="give one value per channel"
    )


def _array_rows(frame: pd.DataFrame) -> np.ndarray:
    paths = frame["path"].astype(str)
    prefix = f"{ARRAY_FILE}#"
    if not paths.str.startswith(prefix).all():
        raise UsageError("the frame mixes array rows and file rows", hint="pass rows of one prepared dataset")
    return paths.str.slice(len(prefix)).astype(np.int64).to_numpy()


class ArrayImageDataset(Dataset[tuple[torch.Tensor, int]]):
    """Rows of images.npy held in memory as uint8 [N, C, H, W]; items are float [C, H, W] in [-1, 1].

    With `mean`/`std`, items are `(x / 255 - mean) / std` instead (a pretrained trunk's statistics).
    No augmentation and no crop (`crop_pct` does not apply): flips or crops would change the meaning
    of digits or cut their strokes, and these sets are small.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        image_size: int | None,
        channels: int | None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        interpolation: str | None = None,
    ) -> None:
        array = images if images.ndim == 4 else images[..., None]
        self.images = torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))
        self.labels = torch.from_numpy(labels.astype(np.int64))
        native = int(self.images.shape[1])
        self.channels = channels or native
        if self.channels not in (1, 3) or (native == 3 and self.channels == 1):
            raise UsageError(
                f"cannot turn {native}-channel images into {self.channels} channels",
                hint="use channels=None (native) or 3",
            )
        self.image_size = image_size
        self.interpolation = interpolation or "bilinear"
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None
        if (mean is None) != (std is None):
            raise UsageError("mean and std go together", hint="pass both, or neither")
        if mean is not None and std is not None:
            self.mean = torch.tensor(per_channel(mean, self.channels)).view(1, -1, 1, 1)
            self.std = torch.tensor(per_channel(std, self.channels)).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def get_batch(self, indices: Sequence[int] | torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Images float [B, C, H, W] and labels int64 [B] for positions `indices`, built in one go."""
        index = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        raw = self.images.index_select(0, index).float()
        batch = raw.div_(127.5).sub_(1.0) if self.mean is None else raw.div_(255.0)
        if self.image_size is not None and batch.shape[-1] != self.image_size:
            corners = None if self.interpolation == "nearest" else False
            batch = F.interpolate(
                batch, size=(self.image_size, self.image_size), mode=self.interpolation, align_corners=corners
            )
        if batch.shape[1] != self.channels:
            batch = batch.expand(-1, self.channels, -1, -1).contiguous()
        if self.mean is not None and self.std is not None:
            batch = batch.sub_(self.mean).div_(self.std)  # a fresh tensor: index_select/expand copied it
        return batch, self.labels.index_select(0, index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        images, labels = self.get_batch([i])
        return images[0], int(labels[0])


class ImageFileDataset(Dataset[tuple[torch.Tensor, int]]):
    """Images read with PIL from the prepared folder, transformed for training or evaluation."""

    def __init__(
        self,
        prepared: PreparedDataset,
        frame: pd.DataFrame,
        *,
        train: bool,
        image_size: int,
        bbox_crop: bool,
        channels: int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        interpolation: str | None = None,
        crop_pct: float | None = None,
    ) -> None:
        from torchvision import transforms

        self.root = prepared.root
        self.paths = frame["path"].astype(str).tolist()
        self.labels = frame["label"].astype(np.int64).tolist()
        self.boxes: np.ndarray | None = None
        if bbox_crop:
            if not all(c in frame.columns for c in BOX_COLUMNS):
                raise UsageError(
                    f"{prepared.name} has no bounding boxes", hint="bbox_crop works for cub200 and cars196 only"
                )
            self.boxes = frame[list(BOX_COLUMNS)].to_numpy(dtype=np.float64)
        self.channels = channels
        if (mean is None) != (std is None):
            raise UsageError("mean and std go together", hint="pass both, or neither")
        mode = transforms.InterpolationMode(interpolation or "bilinear")
        side = resize_side(image_size, crop_pct)
        steps: list[Any] = [transforms.Resize(side, interpolation=mode)]
        if train:
            steps += [transforms.RandomResizedCrop(image_size, interpolation=mode), transforms.RandomHorizontalFlip()]
        else:
            steps += [transforms.CenterCrop(image_size)]
        steps += [
            transforms.ToTensor(),
            transforms.Normalize(
                per_channel(mean or IMAGENET_MEAN, channels), per_channel(std or IMAGENET_STD, channels)
            ),
        ]
        self.transform = transforms.Compose(steps)

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int) -> Image.Image:
        """The i-th image as a PIL image in the requested mode, cropped to its box when asked."""
        path = self.root / self.paths[i]
        try:
            with Image.open(path) as raw:
                image = raw.convert("RGB" if self.channels == 3 else "L")
        except (OSError, UnidentifiedImageError) as err:
            raise ChecksumError(
                f"cannot read image {path}: {err}", hint="the prepared dataset is damaged; rerun prepare with --force"
            ) from None
        if self.boxes is not None:
            x1, y1, x2, y2 = self.boxes[i]
            box = (
                max(0, int(x1)),
                max(0, int(y1)),
                min(image.width, int(np.ceil(x2))),
                min(image.height, int(np.ceil(y2))),
            )
            if box[2] > box[0] and box[3] > box[1]:
                image = image.crop(box)
        return image

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        tensor: torch.Tensor = self.transform(self.load(i))
        return tensor, self.labels[i]


def build_dataset(
    prepared: PreparedDataset,
    frame: pd.DataFrame,
    *,
    train: bool,
    image_size: int | None,
    bbox_crop: bool = False,
    channels: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    interpolation: str | None = None,
    crop_pct: float | None = None,
) -> ArrayImageDataset | ImageFileDataset:
    """A torch Dataset of (float [C, H, W], label) over the rows of `frame` (a subset of `prepared.index`).

    `image_size=None` keeps array images at their native size (image files need a size; the spec's
    `image_size` is the usual choice). `channels=None` keeps the native channels of arrays and uses RGB
    for image files; 3 turns grayscale into 3 identical channels. `mean`/`std` (0-1 scale, one value
    per channel or one for all), `interpolation` (bilinear, bicubic, nearest) and `crop_pct` (eval
    crop / resize side) replace the defaults; `dmlbench.models.preprocessing(cfg.model)` gives them
    from a resolved config.
    """
    if prepared.is_array:
        if bbox_crop:
            raise UsageError(f"{prepared.name} has no bounding boxes", hint="bbox_crop is for cub200 and cars196")
        images = load_npy(
            prepared.root / ARRAY_FILE, mmap_mode="r", hint=f"rerun `dmlbench prepare {prepared.name} --force`"
        )
        rows = _array_rows(frame)
        return ArrayImageDataset(
            np.asarray(images[rows]),
            frame["label"].to_numpy(),
            image_size=image_size,
            channels=channels,
            mean=mean,
            std=std,
            interpolation=interpolation,
        )
    if image_size is None:
        raise UsageError(f"{prepared.name} is made of image files; give an image_size", hint="e.g. 224")
    return ImageFileDataset(
        prepared,
        frame,
        train=train,
        image_size=image_size,
        bbox_crop=bbox_crop,
        channels=channels or 3,
        mean=mean,
        std=std,
        interpolation=interpolation,
        crop_pct=crop_pct,
    )
