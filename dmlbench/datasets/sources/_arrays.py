"""Shared by array-backed sources: write images.npy and the matching index rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dmlbench.datasets.prepared import ARRAY_FILE


def write_array_dataset(staging: Path, images: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """Save uint8 images [N,H,W] or [N,H,W,3] and return rows `images.npy#<row>` with their labels."""
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or len(images) != len(labels):
        raise ValueError(f"bad image array {images.dtype} {images.shape} for {len(labels)} labels")
    np.save(staging / ARRAY_FILE, np.ascontiguousarray(images), allow_pickle=False)
    return pd.DataFrame({"path": [f"{ARRAY_FILE}#{i}" for i in range(len(images))], "label": labels.astype(np.int64)})
