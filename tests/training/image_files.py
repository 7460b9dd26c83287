"""A tiny prepared image-file dataset (varied PNGs of different sizes) and the user catalog that names it.

Every image differs and has its own size, so a crop or a flip drawn differently shows in the pixels:
the worker-independence and resume tests would pass trivially on identical images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import tomli_w
from PIL import Image

from dmlbench.datasets.catalog import get_spec, spec_to_table
from dmlbench.datasets.prepared import INDEX_FILE, write_info
from dmlbench.datasets.spec import DatasetSpec

NAME = "tinyfiles"
TRAIN_CLASSES, TEST_CLASSES, PER_CLASS = 6, 3, 6


def make_image_dataset(data_root: Path, catalog_dir: Path) -> Path:
    """Write `NAME` prepared under `data_root` (no prepare step: the files are the dataset); return its catalog."""
    base = get_spec("cub200").model_dump()
    base.update(
        name=NAME,
        title="tiny generated image files",
        files=(),
        expect_images={},
        expect_classes={},
        train_classes=[1, TRAIN_CLASSES],
        test_classes=[TRAIN_CLASSES + 1, TRAIN_CLASSES + TEST_CLASSES],
        backbone="small_cnn",
        image_size=24,
        default_batch_classes=4,
        default_batch_per_class=2,
        default_epochs=1,
    )
    spec = DatasetSpec(**base)
    root = data_root / NAME
    rng = np.random.default_rng(0)
    rows = []
    for label in range(1, TRAIN_CLASSES + TEST_CLASSES + 1):
        for k in range(PER_CLASS):
            path = f"images/{label:03d}/{k}.png"
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            height, width = (int(v) for v in rng.integers(30, 60, size=2))
            pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
            pixels[:, : width // 3] //= 2  # an asymmetric picture, so a flip changes it
            Image.fromarray(pixels).save(root / path)
            rows.append({"path": path, "label": label, "split": "train" if label <= TRAIN_CLASSES else "test"})
    frame = pd.DataFrame(rows)
    index_bytes = frame.to_csv(index=False).encode()
    (root / INDEX_FILE).write_bytes(index_bytes)
    write_info(root, spec, frame, index_bytes, disjoint=True, image_size=None)
    catalog = catalog_dir / "tinyfiles.toml"
    catalog.write_text(tomli_w.dumps({NAME: spec_to_table(spec)}))
    return catalog
