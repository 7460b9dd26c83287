"""The image-file pipeline: torchvision's results from explicit seeds, the loader, the decode cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torchvision import transforms

from dmlbench.datasets.cache import Recipe, build_cache, open_cache
from dmlbench.datasets.loader import BatchLoader, data_workers
from dmlbench.datasets.prepared import CACHE_DIR, INDEX_FILE, PreparedDataset
from dmlbench.datasets.torch_data import ImageFileDataset, build_dataset
from dmlbench.paths import Places

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture
def folder(tmp_path: Path) -> PreparedDataset:
    """Eight varied images, two of them so narrow that the random crop falls back to its central crop."""
    rng = np.random.default_rng(0)
    sizes = [(40, 50), (60, 45), (33, 90), (70, 70), (12, 240), (240, 12), (50, 41), (45, 64)]
    rows = []
    for k, (height, width) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(tmp_path / f"{k}.png")
        rows.append({"path": f"{k}.png", "label": k % 4, "split": "train"})
    pd.DataFrame(rows).to_csv(tmp_path / INDEX_FILE, index=False)
    info = {"index_sha256": "i", "spec_sha256": "s", "created": "now"}
    return PreparedDataset(name="files", root=tmp_path, info=info)


def _dataset(prepared: PreparedDataset, *, train: bool, **kwargs: object) -> ImageFileDataset:
    ds = build_dataset(prepared, prepared.index, train=train, image_size=32, **kwargs)  # type: ignore[arg-type]
    assert isinstance(ds, ImageFileDataset)
    return ds


def test_seeded_items_are_torchvisions_pipeline(folder: PreparedDataset) -> None:
    """Same pixels as Resize -> RandomResizedCrop -> flip -> ToTensor -> Normalize drawing from the same seed."""
    train = _dataset(folder, train=True)
    reference = transforms.Compose(
        [
            transforms.Resize(train.side),
            transforms.RandomResizedCrop(32),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )
    for i in range(len(train)):
        for seed in range(12):
            torch.manual_seed(seed)
            expected = reference(Image.open(folder.root / f"{i}.png").convert("RGB"))
            assert torch.equal(train[(i, seed)][0], expected), (i, seed)
    evaluation = _dataset(folder, train=False)
    center = transforms.Compose(
        [
            transforms.Resize(evaluation.side),
            transforms.CenterCrop(32),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )
    for i in range(len(evaluation)):
        assert torch.equal(evaluation[i][0], center(Image.open(folder.root / f"{i}.png").convert("RGB")))


def test_batches_do_not_depend_on_the_number_of_workers(folder: PreparedDataset) -> None:
    ds = _dataset(folder, train=True)
    lists = [[0, 3, 5], [1, 2, 7], [4, 6, 0]]
    positions = [[0, 1, 2], [3, 4, 5], [6, 7, 8]]

    def images(workers: int, epoch: int) -> list[torch.Tensor]:
        loader = BatchLoader(ds, device=torch.device("cpu"), num_workers=workers)
        try:
            return [x for x, _ in loader(lists, seed=3, epoch=epoch, positions=positions)]
        finally:
            loader.close()

    alone, spread = images(0, epoch=0), images(2, epoch=0)
    assert all(torch.equal(a, b) for a, b in zip(alone, spread, strict=True))
    assert not torch.equal(alone[0], images(0, epoch=1)[0])  # a new epoch draws new crops
    # Image 0 appears twice in one epoch, at two positions: two different crops.
    assert not torch.equal(alone[0][0], alone[2][2])


def test_auto_workers() -> None:
    assert data_workers(3, in_memory=True) == 3  # an explicit count is used as given
    assert data_workers("auto", in_memory=True) == 0  # in-memory arrays batch in the training process
    assert data_workers("auto", in_memory=False, batches=0) == 0
    assert data_workers("auto", in_memory=False, share=10_000) == 0


def test_decode_cache_gives_the_same_pixels(folder: PreparedDataset) -> None:
    plain = _dataset(folder, train=True, decode_cache="off")
    cached = _dataset(folder, train=True, decode_cache="build", num_workers=0)
    assert cached.cache is not None and plain.cache is None
    for i in range(len(plain)):
        assert torch.equal(plain[(i, 7)][0], cached[(i, 7)][0])
    # "use" (evaluation's default) reads the cache of the same preprocessing...
    assert _dataset(folder, train=False).cache is not None
    # ...and never one made for another size, interpolation or channel count.
    other = build_dataset(folder, folder.index, train=False, image_size=48)
    assert isinstance(other, ImageFileDataset) and other.cache is None
    grey = build_dataset(folder, folder.index, train=False, image_size=32, channels=1)
    assert isinstance(grey, ImageFileDataset) and grey.cache is None
    bicubic = build_dataset(folder, folder.index, train=False, image_size=32, interpolation="bicubic")
    assert isinstance(bicubic, ImageFileDataset) and bicubic.cache is None
    # A re-prepared dataset (new prepared.json) does not match the old cache either.
    again = PreparedDataset(name="files", root=folder.root, info={**folder.info, "created": "later"})
    assert open_cache(again, plain.recipe) is None


def test_a_half_built_cache_is_never_used(folder: PreparedDataset) -> None:
    recipe = _dataset(folder, train=False).recipe

    def failing() -> object:
        yield np.zeros((4, 4, 3), dtype=np.uint8)
        raise KeyboardInterrupt  # killed mid-build

    with pytest.raises(KeyboardInterrupt):
        build_cache(folder, recipe, failing(), lock=folder.root / ".prepare.lock")  # type: ignore[arg-type]
    assert open_cache(folder, recipe) is None
    assert [p.name for p in (folder.root / CACHE_DIR).iterdir()] == []  # staging removed
    assert _dataset(folder, train=False).cache is None


def test_a_busy_dataset_lock_means_no_cache_not_an_error(folder: PreparedDataset) -> None:
    from dmlbench.utils.locks import exclusive_lock

    recipe = Recipe(side=37, interpolation="bilinear", channels=3, bbox_crop=False)
    lock = folder.root / ".prepare.lock"
    with exclusive_lock(lock, holder="prepare files", what="dataset files"):
        assert build_cache(folder, recipe, iter([]), lock=lock) is None
    assert open_cache(folder, recipe) is None


@pytest.mark.parametrize("planted", ["cache folder", "recipe folder"])
def test_a_link_planted_at_the_cache_is_refused_not_written_through(
    folder: PreparedDataset, tmp_path: Path, planted: str
) -> None:
    from dmlbench.errors import ConfigError

    recipe = _dataset(folder, train=False).recipe
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cache_root = folder.root / CACHE_DIR
    shutil.rmtree(cache_root, ignore_errors=True)
    if planted == "cache folder":
        cache_root.symlink_to(elsewhere, target_is_directory=True)
    else:
        cache_root.mkdir()
        (cache_root / recipe.key(folder)).symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ConfigError, match="symbolic link"):
        build_cache(folder, recipe, iter([np.zeros((4, 4, 3), dtype=np.uint8)]), lock=folder.root / ".prepare.lock")
    assert list(elsewhere.iterdir()) == []


def test_prepare_force_drops_the_decode_caches(tmp_path: Path) -> None:
    from dmlbench.datasets import prepare

    prepared = prepare("digits", Places.of(tmp_path))
    (prepared.root / CACHE_DIR / "0123456789abcdef").mkdir(parents=True)
    prepare("digits", Places.of(tmp_path), force=True)
    assert not (prepared.root / CACHE_DIR).exists()


@pytest.mark.gpu
def test_uint8_batches_are_normalised_on_the_gpu_as_on_the_cpu(folder: PreparedDataset) -> None:
    ds = _dataset(folder, train=True)
    lists, positions = [[0, 1, 2, 3]], [[0, 1, 2, 3]]
    on_cpu = next(iter(BatchLoader(ds, device=torch.device("cpu"), num_workers=0)(lists, seed=1, positions=positions)))
    loader = BatchLoader(ds, device=torch.device("cuda"), num_workers=2)
    images, labels = next(iter(loader(lists, seed=1, positions=positions)))
    loader.close()
    assert images.is_cuda and labels.is_cuda and images.dtype == torch.float32
    assert torch.equal(images.cpu(), on_cpu[0])  # elementwise /255, -mean, /std: exact on both devices
