"""Retrieval grids: each query beside its nearest neighbours, green border for the query's class, red for
any other (PIL only: no torch, no faiss, no matplotlib).

`draw_retrieval_grid` is the one drawing; `report` (html, `--plots`) feeds it `eval/<split>/retrieval.json`
and a command that searches an index can feed it its own results. Image paths come from a run folder,
which is untrusted input: they are read only inside the prepared dataset's folder, and a path that is
missing, outside it or unreadable becomes a grey tile instead of an error.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

ARRAY_MARK = "#"  # array-backed datasets: "images.npy#<row>" (docs/architecture.md "Prepared dataset")
QUERY_COLOUR = (40, 90, 200)
CORRECT_COLOUR = (30, 160, 60)
WRONG_COLOUR = (210, 40, 40)
MISSING_COLOUR = (200, 200, 200)
UNKNOWN_COLOUR = (150, 150, 150)  # the query's class is not known (a search of unlabelled images)
_LABEL_WIDTH = 64
_GAP = 6


@dataclass(frozen=True)
class GridRow:
    """One line of a grid: a caption, the query's image path and its neighbours' (path, correct) pairs
    (correct None: the query's class is unknown, drawn grey)."""

    caption: str
    query: str
    neighbours: Sequence[tuple[str, bool | None]]


class ImageSource:
    """Reads the images of one prepared dataset folder, by the paths its index.csv uses."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._arrays: dict[str, np.ndarray] = {}

    def load(self, path: str) -> Image.Image | None:
        """The image at `path` (relative to the dataset folder) as RGB, or None when it cannot be read."""
        from PIL import Image, UnidentifiedImageError

        name, _, row = path.partition(ARRAY_MARK)
        target = (self.root / name).resolve()
        if not target.is_relative_to(self.root):
            log.warning("image path %r leaves the dataset folder; not read", path)
            return None
        try:
            if row:
                array = self._arrays.get(name)
                if array is None:
                    array = np.load(target, mmap_mode="r", allow_pickle=False)
                    self._arrays[name] = array
                pixels = np.asarray(array[int(row)])
                if pixels.dtype != np.uint8:
                    return None
                return Image.fromarray(pixels).convert("RGB")
            with Image.open(target) as image:
                return image.convert("RGB")
        except (OSError, ValueError, IndexError, UnidentifiedImageError, Image.DecompressionBombError) as err:
            log.warning("cannot read image %r: %s", path, err)
            return None


class NamedFileSource(ImageSource):
    """Reads files by the paths a search names (the user's own query images and an index's gallery paths);
    array rows (`images.npy#<row>`) still come from the prepared dataset folder `root`."""

    def load(self, path: str) -> Image.Image | None:
        from PIL import Image, UnidentifiedImageError

        if ARRAY_MARK in path:
            return super().load(path)
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as err:
            log.warning("cannot read image %r: %s", path, err)
            return None


def _tile(image: Image.Image | None, size: int, colour: tuple[int, int, int], border: int) -> Image.Image:
    from PIL import Image, ImageOps

    tile = Image.new("RGB", (size, size), colour)
    inner = size - 2 * border
    if image is None:
        tile.paste(Image.new("RGB", (inner, inner), MISSING_COLOUR), (border, border))
        return tile
    # small images (8x8 digits) are enlarged with sharp pixels, large ones reduced smoothly
    resample = Image.Resampling.NEAREST if max(image.size) < inner else Image.Resampling.LANCZOS
    fitted = ImageOps.pad(image, (inner, inner), method=resample, color=(255, 255, 255))
    tile.paste(fitted, (border, border))
    return tile


def draw_retrieval_grid(
    rows: Sequence[GridRow], source: ImageSource, *, cell: int = 88, border: int = 4, title: str | None = None
) -> Image.Image:
    """A grid: one line per row, its caption, the query (blue border), then its neighbours nearest first
    (green border: same class as the query, red: another class)."""
    from PIL import Image, ImageDraw

    columns = 1 + max((len(row.neighbours) for row in rows), default=0)
    top = 22 if title else 0
    width = _LABEL_WIDTH + columns * (cell + _GAP) + _GAP
    height = top + max(1, len(rows)) * (cell + _GAP) + _GAP
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((_GAP, 5), title, fill=(0, 0, 0))
    for line, row in enumerate(rows):
        y = top + _GAP + line * (cell + _GAP)
        draw.text((_GAP, y + cell // 2 - 6), row.caption, fill=(0, 0, 0))
        x = _LABEL_WIDTH
        canvas.paste(_tile(source.load(row.query), cell, QUERY_COLOUR, border), (x, y))
        for column, (path, correct) in enumerate(row.neighbours, start=1):
            colour = UNKNOWN_COLOUR if correct is None else CORRECT_COLOUR if correct else WRONG_COLOUR
            canvas.paste(_tile(source.load(path), cell, colour, border), (x + column * (cell + _GAP), y))
    return canvas


def png_bytes(image: Image.Image) -> bytes:
    """The image as PNG (no metadata, so the same grid gives the same bytes)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
