"""A generated dataset of coloured patterns: offline, seconds to build, learnable (tests, smoke runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dmlbench.datasets.sources._arrays import write_array_dataset
from dmlbench.datasets.sources.base import Source, SourceInputs
from dmlbench.datasets.spec import DatasetSpec
from dmlbench.errors import ConfigError
from dmlbench.events import EventHandler


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

    def build(
        self, spec: DatasetSpec, inputs: SourceInputs, staging: Path, on_event: EventHandler | None
    ) -> pd.DataFrame:
        """Generate the images deterministically from the spec's params and write images.npy."""
        try:
            params = {key: int(spec.params[key]) for key in ("num_classes", "images_per_class", "size", "seed")}
        except (KeyError, ValueError) as err:
            raise ConfigError(
                f"[{spec.name}] params needs integer num_classes, images_per_class, size and seed ({err})",
                hint="see [synthetic] in datasets.toml",
            ) from None
        images, labels = generate(**params)
        return write_array_dataset(staging, images, labels)
