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

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from dmlbench.datasets.cache import DecodeCache, Recipe, build_cache, open_cache
from dmlbench.datasets.loader import data_workers, sample_seed
from dmlbench.datasets.prepared import ARRAY_FILE, BOX_COLUMNS, PreparedDataset
from dmlbench.errors import ChecksumError, UsageError
from dmlbench.utils.npy import load_npy

if TYPE_CHECKING:
    import pandas as pd

    from dmlbench.config import ModelConfig

log = logging.getLogger(__name__)

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


# torchvision's RandomResizedCrop defaults
_CROP_SCALE = (0.08, 1.0)
_CROP_RATIO = (3 / 4, 4 / 3)


def crop_params(width: int, height: int, generator: torch.Generator) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params (top, left, height, width), drawn from `generator`.

    The same algorithm with an explicit generator: torchvision's draws from the global RNG, which
    every data-loader worker seeds differently.
    """
    area = height * width
    low, high = torch.log(torch.tensor(_CROP_RATIO)).tolist()  # float32 like torchvision's: the same draws
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(*_CROP_SCALE, generator=generator).item()
        aspect = torch.exp(torch.empty(1).uniform_(low, high, generator=generator)).item()
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, size=(1,), generator=generator).item())
            left = int(torch.randint(0, width - w + 1, size=(1,), generator=generator).item())
            return top, left, h, w
    ratio = width / height  # fallback: the central crop of the allowed aspect ratios
    if ratio < _CROP_RATIO[0]:
        w, h = width, round(width / _CROP_RATIO[0])
    elif ratio > _CROP_RATIO[1]:
        h, w = height, round(height * _CROP_RATIO[1])
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class ImageFileDataset(Dataset[tuple[torch.Tensor, int]]):
    """Images read with PIL from the prepared folder, transformed for training or evaluation.

    The pipeline, per image: decode, crop to the box, resize the shorter side to `resize_side` (the
    part a decode cache can store), then a random resized crop and flip (training, drawn from a
    generator seeded by `sample_seed`) or a center crop (evaluation), then normalisation. `uint8_item`
    stops before normalisation so that batches travel to the device as bytes and are normalised
    there (`normalize`); `dataset[i]` is the whole pipeline. An item is either a position `i` or
    `(i, seed)`: a training item without a seed uses `sample_seed(0, 0, i)`.
    """

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
        self.train = train
        self.image_size = image_size
        self.interpolation = transforms.InterpolationMode(interpolation or "bilinear")
        self.side = resize_side(image_size, crop_pct)
        self.resize = transforms.Resize(self.side, interpolation=self.interpolation)
        self.mean = torch.tensor(per_channel(mean or IMAGENET_MEAN, channels)).view(1, -1, 1, 1)
        self.std = torch.tensor(per_channel(std or IMAGENET_STD, channels)).view(1, -1, 1, 1)
        self.cache: DecodeCache | None = None
        self.cache_rows: list[int] | None = None

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

    @property
    def recipe(self) -> Recipe:
        """What a decode cache must hold for this dataset: its steps before the random one."""
        return Recipe(
            side=self.side,
            interpolation=self.interpolation.value,
            channels=self.channels,
            bbox_crop=self.boxes is not None,
        )

    def use_cache(self, cache: DecodeCache, rows: Sequence[int]) -> None:
        """Read the resized images from `cache`; `rows[i]` is item i's row in it (its prepared-index row)."""
        self.cache, self.cache_rows = cache, list(rows)

    def resized(self, i: int) -> np.ndarray:
        """Item i decoded, box-cropped and resized to `side`: uint8 [H, W, C] (from the cache when there is one)."""
        if self.cache is not None and self.cache_rows is not None:
            return self.cache.pixels(self.cache_rows[i])
        pixels = np.asarray(self.resize(self.load(i)))
        return pixels if pixels.ndim == 3 else pixels[..., None]

    def uint8_item(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        """Item `i` or `(i, seed)` up to the normalisation: uint8 [C, image_size, image_size] and its label."""
        from torchvision.transforms import functional as TF

        i, seed = (item, None) if isinstance(item, int) else item
        pixels = self.resized(i)
        image = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
        if self.train:
            generator = torch.Generator().manual_seed(sample_seed(0, 0, i) if seed is None else seed)
            top, left, height, width = crop_params(image.width, image.height, generator)
            size = [self.image_size, self.image_size]
            image = TF.resized_crop(image, top, left, height, width, size, interpolation=self.interpolation)
            if torch.rand(1, generator=generator).item() < 0.5:
                image = TF.hflip(image)
        else:
            image = TF.center_crop(image, [self.image_size, self.image_size])
        array = np.array(image, dtype=np.uint8)
        array = array if array.ndim == 3 else array[..., None]
        return torch.from_numpy(array).permute(2, 0, 1).contiguous(), self.labels[i]

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, C, H, W] (on any device) -> the model's float input; what ToTensor + Normalize compute."""
        mean, std = self.mean.to(images.device), self.std.to(images.device)
        return images.float().div_(255).sub_(mean).div_(std)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int]:  # type: ignore[override]
        image, label = self.uint8_item(item)
        return self.normalize(image[None])[0], label


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
    decode_cache: Literal["build", "use", "off"] = "use",
    num_workers: int | Literal["auto"] = "auto",
) -> ArrayImageDataset | ImageFileDataset:
    """A torch Dataset of (float [C, H, W], label) over the rows of `frame` (a subset of `prepared.index`).

    `image_size=None` keeps array images at their native size (image files need a size; the spec's
    `image_size` is the usual choice). `channels=None` keeps the native channels of arrays and uses RGB
    for image files; 3 turns grayscale into 3 identical channels. `mean`/`std` (0-1 scale, one value
    per channel or one for all), `interpolation` (bilinear, bicubic, nearest) and `crop_pct` (eval
    crop / resize side) replace the defaults; `dmlbench.models.preprocessing(cfg.model)` gives them
    from a resolved config.

    `decode_cache` (image files only): "use" reads a complete decode cache of this preprocessing when
    one exists, "build" makes it first when it does not (decoding with `num_workers` processes), "off"
    always reads the files. The pixels are the same either way.
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
    dataset = ImageFileDataset(
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
    if decode_cache != "off" and len(frame):
        cache = open_cache(prepared, dataset.recipe)
        if cache is None and decode_cache == "build":
            cache = _build_cache(prepared, dataset, num_workers)
        if cache is not None:
            row_of = {path: row for row, path in enumerate(prepared.index["path"].astype(str))}
            try:
                dataset.use_cache(cache, [row_of[path] for path in dataset.paths])
            except KeyError:
                log.warning("%s: rows outside the prepared index; reading the image files", prepared.name)
    return dataset


def dataset_for_model(
    prepared: PreparedDataset,
    frame: pd.DataFrame,
    model: ModelConfig,
    *,
    train: bool = False,
    decode_cache: Literal["build", "use", "off"] = "use",
    num_workers: int | Literal["auto"] = "auto",
) -> ArrayImageDataset | ImageFileDataset:
    """`build_dataset` of `frame` as a model of the resolved `model` config sees it: its image size, channels
    and preprocessing (mean, std, interpolation, crop). What training, validation, evaluation and `embed` use,
    so a model is always fed its images one way."""
    from dmlbench.models import preprocessing

    return build_dataset(
        prepared,
        frame,
        train=train,
        image_size=model.image_size,
        channels=model.in_channels,
        decode_cache=decode_cache,
        num_workers=num_workers,
        **preprocessing(model),
    )


def _build_cache(
    prepared: PreparedDataset, like: ImageFileDataset, num_workers: int | Literal["auto"]
) -> DecodeCache | None:
    """Decode and resize every image of the prepared index once, the way `like` does, into its decode cache."""
    from dmlbench.datasets.prepared import PREPARE_LOCK

    index = prepared.index
    every = ImageFileDataset(
        prepared,
        index,
        train=False,
        image_size=like.image_size,
        bbox_crop=like.boxes is not None,
        channels=like.channels,
        interpolation=like.interpolation.value,
    )
    every.side, every.resize = like.side, like.resize
    workers = data_workers(num_workers, in_memory=False, batches=len(index))
    loader = torch.utils.data.DataLoader(
        _Resized(every),
        batch_size=None,
        collate_fn=_as_is,
        num_workers=workers,
        prefetch_factor=16 if workers else None,
    )
    log.info("building the decode cache of %s (%d images, side %d)", prepared.name, len(index), like.side)
    return build_cache(
        prepared, like.recipe, (np.asarray(image) for image in loader), lock=prepared.root / PREPARE_LOCK
    )


def _as_is(item: Any) -> Any:
    """The cache builder's collate: keep each decoded image an array (a module function, so workers can pickle it)."""
    return item


class _Resized(Dataset[np.ndarray]):
    """Each image of a dataset up to its resize, for building the decode cache in worker processes."""

    def __init__(self, dataset: ImageFileDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.dataset.resized(i)
