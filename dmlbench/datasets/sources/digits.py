"""scikit-learn's bundled 8x8 handwritten digits: no download, the out-of-the-box dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dmlbench.datasets.sources._arrays import write_array_dataset
from dmlbench.datasets.sources.base import Source, SourceInputs
from dmlbench.datasets.spec import DatasetSpec
from dmlbench.events import EventHandler


class DigitsSource(Source):
    """`sklearn.datasets.load_digits()`: 1,797 images with values 0..16, stored rescaled to 0..255."""

    needs_files = False

    def build(
        self, spec: DatasetSpec, inputs: SourceInputs, staging: Path, on_event: EventHandler | None
    ) -> pd.DataFrame:
        """Write images.npy (uint8 [1797, 8, 8]) and return the index rows."""
        from sklearn.datasets import load_digits

        bunch = load_digits()
        # 0..16 -> 0..255 so every array dataset is read the same way (x / 255).
        images = np.rint(np.asarray(bunch.images, dtype=np.float64) * (255.0 / 16.0)).astype(np.uint8)
        return write_array_dataset(staging, images, np.asarray(bunch.target))
