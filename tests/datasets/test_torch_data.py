"""The torch side: array datasets with a vectorised get_batch, image files with the standard transforms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from dataset_builders import Built, build_cub_tgz
from PIL import Image

from dmlbench.datasets import prepare
from dmlbench.datasets.torch_data import ArrayImageDataset, ImageFileDataset, build_dataset
from dmlbench.errors import UsageError
from dmlbench.paths import Places


def test_digits_get_batch_matches_items(tmp_path: Path) -> None:
    prepared = prepare("digits", Places.of(tmp_path))
    train = prepared.split("train")
    ds = build_dataset(prepared, train, train=True, image_size=None)
    assert isinstance(ds, ArrayImageDataset) and len(ds) == 901
    images, labels = ds.get_batch([0, 5, 900])
    assert images.shape == (3, 1, 8, 8) and images.dtype == torch.float32 and labels.dtype == torch.int64
    assert labels.tolist() == train["label"].iloc[[0, 5, 900]].tolist()
    assert images.min() >= -1.0 and images.max() <= 1.0
    item, label = ds[5]
    assert torch.equal(item, images[1]) and label == int(labels[1])
    raw = np.load(prepared.root / "images.npy")[int(train["path"].iloc[5].split("#")[1])]
    assert torch.allclose(item[0], torch.from_numpy(raw).float() / 127.5 - 1.0)


def test_array_resize_and_grey_to_rgb(tmp_path: Path) -> None:
    prepared = prepare("digits", Places.of(tmp_path))
    ds = build_dataset(prepared, prepared.split("test"), train=False, image_size=16, channels=3)
    images, _ = ds.get_batch(np.arange(4))  # type: ignore[union-attr]
    assert images.shape == (4, 3, 16, 16)
    assert torch.equal(images[:, 0], images[:, 2])


def test_synthetic_rgb(tmp_path: Path) -> None:
    prepared = prepare("synthetic", Places.of(tmp_path))
    ds = build_dataset(prepared, prepared.split("train"), train=True, image_size=32)
    images, labels = ds.get_batch(torch.arange(10))  # type: ignore[union-attr]
    assert images.shape == (10, 3, 32, 32) and set(labels.tolist()) <= set(range(10))
    with pytest.raises(UsageError):
        build_dataset(prepared, prepared.split("train"), train=True, image_size=32, channels=1)


@pytest.fixture
def cub_tiny(tmp_path: Path) -> Path:
    """A prepared mini CUB whose first image is a real 40x30 picture with a known box."""
    from dataset_builders import cub_rows

    rows = cub_rows([1, 101])[:3] + cub_rows([101])[:3]
    built = build_cub_tgz(tmp_path / "CUB_200_2011.tgz", rows=rows)
    from dataset_builders import spec_override

    spec = spec_override(
        "cub200",
        files=(built.file_spec("CUB_200_2011.tgz", "tgz"),),
        expect_images={},
        expect_classes={},
    )
    prepare("cub200", Places.of(tmp_path / "data"), source=built.path, spec=spec)
    return tmp_path / "data"


def test_image_files_train_and_eval_transforms(cub_tiny: Path) -> None:
    from dmlbench.datasets import open_prepared

    prepared = open_prepared("cub200", cub_tiny)
    test = prepared.split("test")
    ds = build_dataset(prepared, test, train=False, image_size=32)
    assert isinstance(ds, ImageFileDataset)
    image, label = ds[0]
    assert image.shape == (3, 32, 32) and label == int(test["label"].iloc[0])
    train_ds = build_dataset(prepared, prepared.split("train"), train=True, image_size=24, channels=3)
    assert train_ds[0][0].shape == (3, 24, 24)
    # grayscale file -> 3 identical channels (after per-channel normalisation the raw values agree)
    path = prepared.root / test["path"].iloc[0]
    Image.new("L", (20, 20), 128).save(path, format="JPEG")
    grey, _ = ds[0]
    assert grey.shape == (3, 32, 32)


def test_bbox_crop(cub_tiny: Path) -> None:
    from dmlbench.datasets import open_prepared

    prepared = open_prepared("cub200", cub_tiny)
    frame = prepared.split("train")
    first = frame.iloc[0]
    path = prepared.root / first["path"]
    # a real-size image: left of the box red, inside the box blue
    image = Image.new("RGB", (500, 400), (255, 0, 0))
    image.paste((0, 0, 255), (int(first["x1"]), int(first["y1"]), int(first["x2"]), int(first["y2"])))
    image.save(path, format="PNG")
    ds = build_dataset(prepared, frame, train=False, image_size=16, bbox_crop=True)
    assert isinstance(ds, ImageFileDataset)
    cropped = ds.load(0)
    assert cropped.size == (int(first["x2"]) - int(first["x1"]), int(first["y2"]) - int(first["y1"]))
    assert cropped.getpixel((cropped.width // 2, cropped.height // 2)) == (0, 0, 255)
    with pytest.raises(UsageError):
        build_dataset(prepare("digits", Places.of(cub_tiny)), frame, train=False, image_size=8, bbox_crop=True)


def test_unreadable_image_is_a_clear_error(cub_tiny: Path) -> None:
    from dmlbench.datasets import open_prepared
    from dmlbench.errors import ChecksumError

    prepared = open_prepared("cub200", cub_tiny)
    frame = prepared.split("test")
    (prepared.root / frame["path"].iloc[1]).write_bytes(b"\xff\xd8\xffgarbage")
    ds = build_dataset(prepared, frame, train=False, image_size=16)
    with pytest.raises(ChecksumError, match="cannot read image"):
        ds[1]
    assert Built  # builders imported for the fixture


def test_dataset_for_model_feeds_the_models_size_channels_and_preprocessing(tmp_path: Path) -> None:
    from dmlbench.config import ModelConfig
    from dmlbench.datasets.torch_data import dataset_for_model

    prepared = prepare("digits", Places.of(tmp_path))
    rows = prepared.split("test").iloc[:6]
    model = ModelConfig(image_size=16, in_channels=3, mean=[0.25], std=[0.5], interpolation="nearest")
    ds = dataset_for_model(prepared, rows, model)
    by_hand = build_dataset(
        prepared, rows, train=False, image_size=16, channels=3, mean=(0.25,), std=(0.5,), interpolation="nearest"
    )
    images, labels = ds.get_batch(np.arange(6))  # type: ignore[union-attr]
    expected, expected_labels = by_hand.get_batch(np.arange(6))  # type: ignore[union-attr]
    assert images.shape == (6, 3, 16, 16) and torch.equal(images, expected) and torch.equal(labels, expected_labels)
    plain, _ = build_dataset(prepared, rows, train=False, image_size=16, channels=3).get_batch(np.arange(6))  # type: ignore[union-attr]
    assert not torch.equal(images, plain)  # the model's mean and std were applied, not the defaults
