"""A generated dataset of coloured patterns: offline, seconds to build, learnable (tests, smoke runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dmlbench.config import MAX_IMAGE_SIZE, MAX_SEED
from dmlbench.datasets.sources._arrays import write_array_dataset
from dmlbench.datasets.sources.base import Source, SourceInputs, check_param_keys, int_param
from dmlbench.datasets.spec import DatasetSpec
from dmlbench.errors import ConfigError
from dmlbench.events import EventHandler

MAX_CLASSES = 100_000  # classes, and images per class
MAX_ARRAY_BYTES = 8 * 2**30  # images.npy is built in memory


def generate(num_classes: int, images_per_class: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class a smooth random colour pattern; per image a random shift, brightness change and noise."""
    rng = np.random.default_rng(seed)
    grid = 4
    protos = rng.uniform(0.0, 1.0, size=(num_classes, grid, grid, 3))
    cell = -(-size // grid)
    images = np.empty((num_classes * images_per_class, size, size, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(num_classes, dtype=np.int64), images_per_class)
    for c in range(num_classes):
        big = np.kron(protos[c], np.ones((cell, cell, 1)))
        for j in range(images_per_class):
            dy, dx = rng.integers(-cell // 2, cell // 2 + 1, size=2)
            img = np.roll(big, (int(dy), int(dx)), axis=(0, 1))[:size, :size]
            img = img * rng.uniform(0.8, 1.2) + rng.normal(0.0, 0.08, size=img.shape)
            images[c * images_per_class + j] = np.clip(img * 255.0, 0, 255).astype(np.uint8)
    return images, labels


class SyntheticSource(Source):
    """Params: num_classes, images_per_class, size, seed (see datasets.toml [synthetic])."""

    needs_files = False
    PARAMS = ("num_classes", "images_per_class", "size", "seed")

    @classmethod
    def check_params(cls, spec: DatasetSpec) -> None:
        cls._params(spec)

    @classmethod
    def _params(cls, spec: DatasetSpec) -> dict[str, int]:
        check_param_keys(spec, cls.PARAMS)
        params = {
            "num_classes": int_param(spec, "num_classes", low=2, high=MAX_CLASSES),
            "images_per_class": int_param(spec, "images_per_class", low=2, high=MAX_CLASSES),
            # The 4 x 4 pattern grid needs a few pixels per cell; the network input is resized anyway.
            "size": int_param(spec, "size", low=8, high=MAX_IMAGE_SIZE),
            "seed": int_param(spec, "seed", low=0, high=MAX_SEED),
        }
        images = params["num_classes"] * params["images_per_class"]
        if images * params["size"] ** 2 * 3 > MAX_ARRAY_BYTES:
            raise ConfigError(
                f"[{spec.name}] params: {images} images of {params['size']}x{params['size']} need more than "
                f"{MAX_ARRAY_BYTES // 2**30} GiB",
                hint="lower num_classes, images_per_class or size",
            )
        return params

    def build(
        self, spec: DatasetSpec, inputs: SourceInputs, staging: Path, on_event: EventHandler | None
    ) -> pd.DataFrame:
        """Generate the images deterministically from the spec's params and write images.npy."""
        images, labels = generate(**self._params(spec))
        return write_array_dataset(staging, images, labels)
