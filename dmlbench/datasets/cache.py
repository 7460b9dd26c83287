"""The decode cache: every image of a prepared image-file dataset, decoded and resized once.

Training reads each image once per epoch; decoding a full-size JPEG costs far more than the crop and
flip that follow. The cache stores what the pipeline computes before its random step (decode, box
crop, resize of the shorter side to the resize side) as raw uint8 pixels in one memory-mapped file,
so a cached batch is bit-identical to an uncached one: the cache changes speed, never results.

Layout: `<prepared>/decode-cache/<key>/` with `pixels.bin` (all images back to back, H x W x C uint8),
`rows.npy` (int64 [N, 4]: offset, height, width, channels, in the order of the prepared index) and
`cache.json` (the recipe and the dataset it was made from), written last. `key` hashes the recipe and
the prepared dataset's identity (index and spec checksums and when it was prepared), so a different
size, interpolation, channel count, box crop or a re-prepared dataset gets a cache of its own and a
cache is never read for preprocessing other than the one that made it. The cache is built in a
staging folder under the dataset's prepare lock and renamed into place: a half-built cache is never
seen. `prepare --force` removes every cache of the dataset.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dmlbench.datasets.prepared import CACHE_DIR, PreparedDataset
from dmlbench.errors import ConfigError
from dmlbench.utils.io import refuse_links

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the stored pixels would differ for the same recipe
PIXELS_FILE = "pixels.bin"
ROWS_FILE = "rows.npy"
META_FILE = "cache.json"
_STAGING_PREFIX = ".staging-"


@dataclass(frozen=True)
class Recipe:
    """What turns an image file into the cached pixels: everything the pipeline does before its random step."""

    side: int  # the shorter side after resizing
    interpolation: str
    channels: int
    bbox_crop: bool

    def key(self, prepared: PreparedDataset) -> str:
        """The cache folder name: this recipe applied to this very preparation of the dataset."""
        info = prepared.info
        identity = {
            "format": FORMAT,
            **asdict(self),
            "index_sha256": info.get("index_sha256"),
            "spec_sha256": info.get("spec_sha256"),
            "created": info.get("created"),
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def cache_folder(prepared: PreparedDataset, recipe: Recipe) -> Path:
    """Where the cache of `recipe` lives (present or not)."""
    return prepared.root / CACHE_DIR / recipe.key(prepared)


def remove_caches(dataset_root: Path) -> None:
    """Drop every decode cache of a dataset folder (its images are about to change)."""
    shutil.rmtree(dataset_root / CACHE_DIR, ignore_errors=True)


class DecodeCache:
    """Read access to a complete cache; `pixels(row)` is the row-th image of the prepared index."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.meta: dict[str, Any] = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        self.rows: np.ndarray = np.load(folder / ROWS_FILE)
        self._pixels: np.memmap[Any, np.dtype[np.uint8]] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self) -> dict[str, Any]:
        # Data-loader workers reopen the map themselves: a pickled memmap would copy every pixel.
        return {**self.__dict__, "_pixels": None}

    def pixels(self, row: int) -> np.ndarray:
        """The cached image `row` as uint8 [H, W, C] (a copy: the map stays read-only)."""
        if self._pixels is None:
            self._pixels = np.memmap(self.folder / PIXELS_FILE, dtype=np.uint8, mode="r")
        offset, height, width, channels = (int(v) for v in self.rows[row])
        size = height * width * channels
        return np.array(self._pixels[offset : offset + size]).reshape(height, width, channels)


def open_cache(prepared: PreparedDataset, recipe: Recipe) -> DecodeCache | None:
    """The complete cache of `recipe`, or None when there is none (yet)."""
    folder = cache_folder(prepared, recipe)
    if not (folder / META_FILE).is_file():
        return None
    try:
        cache = DecodeCache(folder)
    except (OSError, ValueError) as err:
        log.warning("ignoring the unreadable decode cache %s: %s", folder, err)
        return None
    if len(cache) != len(prepared.index):
        log.warning("ignoring the decode cache %s: it holds %d images, not %d", folder, len(cache), len(prepared.index))
        return None
    return cache


def build_cache(
    prepared: PreparedDataset, recipe: Recipe, images: Iterable[np.ndarray], *, lock: Path
) -> DecodeCache | None:
    """Write `images` (uint8 [H, W, C], one per row of the prepared index, in order) as the cache of `recipe`.

    Runs under `lock`, the dataset's prepare lock. Returns None, building nothing, when another process holds
    that lock (it is preparing the dataset or building a cache: this run simply reads the files), or
    when the disk cannot take the cache: either way the results are the same, only slower.
    """
    from dmlbench.utils.locks import exclusive_lock

    folder = cache_folder(prepared, recipe)
    parent = folder.parent
    # a copied dataset folder is untrusted: never build through a link planted at the cache's names
    refuse_links(prepared.root, (CACHE_DIR, f"{CACHE_DIR}/{folder.name}"))
    try:
        parent.mkdir(exist_ok=True)
        with exclusive_lock(lock, holder="decode cache", what=f"dataset {prepared.name}"):
            existing = open_cache(prepared, recipe)  # built by another run while we decoded nothing yet
            if existing is not None:
                return existing
            for stale in parent.glob(f"{_STAGING_PREFIX}*"):
                shutil.rmtree(stale, ignore_errors=True)  # left by a build that was killed
            staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=parent))
            try:
                _write(staging, recipe, prepared, images)
                staging.replace(folder)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except ConfigError as err:  # the lock is busy
        log.info("not building the decode cache of %s now: %s", prepared.name, err.message)
        return None
    except OSError as err:
        log.warning("cannot build the decode cache in %s (%s); reading the image files instead", parent, err)
        return None
    return open_cache(prepared, recipe)


def _write(staging: Path, recipe: Recipe, prepared: PreparedDataset, images: Iterable[np.ndarray]) -> None:
    rows: list[tuple[int, int, int, int]] = []
    offset = 0
    with (staging / PIXELS_FILE).open("wb") as out:
        for image in images:
            pixels = np.ascontiguousarray(image, dtype=np.uint8)
            height, width, channels = pixels.shape
            rows.append((offset, height, width, channels))
            out.write(pixels.tobytes())
            offset += pixels.size
        out.flush()
        os.fsync(out.fileno())
    np.save(staging / ROWS_FILE, np.asarray(rows, dtype=np.int64).reshape(-1, 4))
    meta = {
        "format": FORMAT,
        "recipe": asdict(recipe),
        "dataset": prepared.name,
        "index_sha256": prepared.info.get("index_sha256"),
        "images": len(rows),
        "bytes": offset,
    }
    with (staging / META_FILE).open("w", encoding="utf-8") as handle:  # last: its presence means complete
        json.dump(meta, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    with contextlib.suppress(OSError):  # make the files durable before the rename publishes them
        fd = os.open(staging, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
