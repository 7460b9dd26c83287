"""User images get the preprocessing evaluation gives the run's own dataset (image-file layout here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from dmlbench.config import ModelConfig, TrainConfig
from dmlbench.datasets.prepared import PreparedDataset
from dmlbench.datasets.torch_data import build_dataset
from dmlbench.errors import MissingInputError
from dmlbench.inference.images import images_dataset, list_images, run_preprocessing


def _photos(folder: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i, size in enumerate([(40, 30), (25, 50), (64, 64)]):
        path = folder / f"cls{i % 2}" / f"{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.mark.parametrize("crop_pct", [None, 0.875])
def test_files_layout_matches_the_evaluation_transform(tmp_path: Path, crop_pct: float | None) -> None:
    paths = _photos(tmp_path / "photos")
    model = ModelConfig(backbone="small_cnn", embedding_dim=8, image_size=24, in_channels=3, crop_pct=crop_pct)
    cfg = TrainConfig(dataset="cub200", model=model)
    prepared = PreparedDataset(name="cub200", root=tmp_path / "photos", info={})  # image files: not an array set
    pre = run_preprocessing(cfg, prepared)
    assert pre.layout == "files" and pre.image_size == 24 and pre.mean == (0.485, 0.456, 0.406)
    listed = list_images(tmp_path / "photos")
    ours = images_dataset(listed, pre)
    assert sorted(paths) == listed.paths
    frame = pd.DataFrame({"path": [str(p.relative_to(tmp_path / "photos")) for p in listed.paths], "label": 0})
    theirs = build_dataset(prepared, frame, train=False, image_size=24, channels=3, crop_pct=crop_pct)
    for i in range(3):
        assert torch.equal(ours[i][0], theirs[i][0])
    assert listed.class_names == ["cls0", "cls1"] and listed.labels is not None
    assert listed.labels.tolist() == [0, 0, 1]  # cls0/0.jpg, cls0/2.jpg, cls1/1.jpg


def test_an_unreadable_file_is_named_in_the_files_layout(tmp_path: Path) -> None:
    _photos(tmp_path / "photos")
    bad = tmp_path / "photos" / "cls0" / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    cfg = TrainConfig(dataset="cub200", model=ModelConfig(backbone="small_cnn", image_size=24, in_channels=3))
    pre = run_preprocessing(cfg, PreparedDataset(name="cub200", root=tmp_path, info={}))
    dataset = images_dataset(list_images(tmp_path / "photos"), pre)
    position = [str(p) for p in list_images(tmp_path / "photos").paths].index(str(bad))
    with pytest.raises(MissingInputError, match="bad.jpg"):
        dataset[position]
