"""Every image of a dataset made from the user's files, checked and stored once, at prepare.

A prepared dataset keeps its own copy of each image (the user may move, edit or delete the originals
afterwards): the original bytes when the file decodes completely and is already upright 8-bit RGB or
grayscale, else a lossless PNG of the normalised image (EXIF orientation applied; CMYK, palette,
alpha, 16-bit and other modes turned into RGB or L). Loaders then read every stored image as is.

Each image is decoded completely here: a truncated JPEG opens fine and fails only in `load()`.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image as PILImage

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"})
_READY_MODES = ("RGB", "L")  # stored as they are (when upright)
_ORIENTATION_TAG = 0x0112
_WHITE = (255, 255, 255)


class BadImage(Exception):
    """Why one file cannot be used (the caller names the file or CSV row)."""


@dataclass(frozen=True)
class StoredImage:
    """What prepare learnt about one image: its size once upright, channels, content hash, what was done."""

    width: int
    height: int
    gray: bool
    sha256: str
    suffix: str  # of the stored copy: the original's, or ".png" after normalisation
    converted: str  # "" when the original bytes were kept, else e.g. "CMYK->RGB", "EXIF orientation 6"


def max_pixels() -> int:
    """PIL's decompression-bomb limit (Image.MAX_IMAGE_PIXELS, about 89 million pixels by default)."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    return int(limit) if limit else 2**62


Box = tuple[float, float, float, float]  # left, top, right, bottom in pixels of the upright image


def store_image(source: Path, target_stem: Path, *, pixel_limit: int, box: Box | None = None) -> StoredImage:
    """Check `source` completely and write its stored copy to `target_stem` + suffix; BadImage if unusable.

    With `box`, the stored copy is that region of the upright image (each row of an OML CSV may crop its
    own object out of a shared photo); `width`/`height` are then the crop's."""
    from PIL import Image, UnidentifiedImageError

    try:
        data = source.read_bytes()
    except FileNotFoundError:
        raise BadImage("file not found") from None
    except IsADirectoryError:
        raise BadImage("is a folder, not an image file") from None
    except OSError as err:
        raise BadImage(f"cannot read: {err.strerror or err}") from None
    if not data:
        raise BadImage("empty file (0 bytes)")
    with warnings.catch_warnings():
        # above the limit PIL only warns; above twice the limit it raises
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
            raise BadImage(f"decompression bomb: {err}") from None
        except UnidentifiedImageError:
            raise BadImage("not an image file PIL can decode") from None
        except (OSError, SyntaxError, ValueError) as err:
            raise BadImage(f"truncated or corrupt image: {err}") from None
    width, height = image.size
    if width * height > pixel_limit:
        raise BadImage(f"decompression bomb: {width} x {height} pixels exceeds the limit of {pixel_limit:,} pixels")
    if width == 0 or height == 0:
        raise BadImage(f"empty image ({width} x {height} pixels)")
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise BadImage(f"truncated or corrupt image: {err}") from None
    normalised, converted = _normalise(image)
    if box is not None:
        left, top, right, bottom = box
        if right > normalised.width or bottom > normalised.height:
            raise BadImage(
                f"box x_2={right:g} y_2={bottom:g} reaches outside the {normalised.width} x {normalised.height} "
                "image (box coordinates are pixels of the upright image)"
            )
        normalised = normalised.crop((int(left), int(top), math.ceil(right), math.ceil(bottom)))
        converted = ", ".join(step for step in (converted, "cropped to its box") if step)
    suffix = source.suffix.lower() or ".png"
    target_stem.parent.mkdir(parents=True, exist_ok=True)
    if converted:
        suffix = ".png"
        normalised.save(target_stem.with_suffix(suffix), format="PNG")
    else:
        target_stem.with_suffix(suffix).write_bytes(data)
    return StoredImage(
        width=normalised.width,
        height=normalised.height,
        gray=normalised.mode == "L",
        sha256=hashlib.sha256(data).hexdigest(),
        suffix=suffix,
        converted=converted,
    )


def _normalise(image: PILImage.Image) -> tuple[PILImage.Image, str]:
    """(upright 8-bit RGB or L image, what was done) for a loaded PIL image; "" when nothing was."""
    from PIL import ImageOps

    steps: list[str] = []
    orientation = image.getexif().get(_ORIENTATION_TAG, 1)
    if orientation in range(2, 9):
        image = ImageOps.exif_transpose(image) or image
        steps.append(f"EXIF orientation {orientation}")
    mode = image.mode
    if mode not in _READY_MODES:
        image = _to_8bit(image)
        steps.append(f"{mode}->{image.mode}")
    if getattr(image, "n_frames", 1) > 1 and not steps:
        steps.append("first frame")  # an animated GIF: the first frame, stored as a still PNG
        image = image.copy()
    return image, ", ".join(steps)


def _to_8bit(image: PILImage.Image) -> PILImage.Image:
    """RGB (colour, alpha over white) or L (grayscale, 16/32-bit scaled) for any PIL mode."""
    import numpy as np
    from PIL import Image

    mode = image.mode
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, _WHITE)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if mode == "1":
        return image.convert("L")
    if mode.startswith(("I", "F")):  # 16-bit PNG/TIFF (I;16, I) and float images
        values = np.asarray(image, dtype=np.float64)
        top = float(values.max()) if values.size else 0.0
        scale = 1.0 if top <= 255 else (257.0 if top <= 65535 else top / 255.0)
        return Image.fromarray(np.clip(np.round(values / scale), 0, 255).astype(np.uint8), mode="L")
    return image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, palette without transparency


def store_images(
    jobs: Sequence[tuple[Path, Path, Box | None]],
    *,
    workers: int | None = None,
    pixel_limit: int | None = None,
    on_done: Callable[[int], None] | None = None,
) -> Iterator[StoredImage | BadImage]:
    """`store_image` over (source, target_stem, box) triples in order, decoded by a few threads (PIL releases the GIL
    while it decodes and zlib while it compresses); `on_done(n)` after every chunk."""
    limit = pixel_limit if pixel_limit is not None else max_pixels()
    threads = workers or min(8, os.cpu_count() or 1)

    def one(job: tuple[Path, Path, Box | None]) -> StoredImage | BadImage:
        try:
            return store_image(job[0], job[1], pixel_limit=limit, box=job[2])
        except BadImage as bad:
            return bad

    chunk = 512
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for first in range(0, len(jobs), chunk):
            part = jobs[first : first + chunk]
            yield from pool.map(one, part)
            if on_done is not None:
                on_done(len(part))


def duplicate_groups(paths: Sequence[str], digests: Sequence[str]) -> list[list[str]]:
    """Groups (2 or more) of `paths` whose file bytes are identical, each in input order."""
    by_digest: dict[str, list[str]] = {}
    for path, digest in zip(paths, digests, strict=True):
        by_digest.setdefault(digest, []).append(path)
    return [group for group in by_digest.values() if len(group) > 1]
