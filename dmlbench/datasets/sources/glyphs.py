"""Glyphs: one class per character, drawn from the TrueType fonts that ship inside matplotlib (no download).

Characters come from Latin (A-Z, a-z, the letters of Latin-1 and Latin Extended-A), Greek, Cyrillic and
the digits; each is rendered only with the faces whose cmap holds it. A character whose rendering nearly
equals an earlier class's (Latin A / Greek Alpha / Cyrillic A) is a homoglyph and not a class. Every glyph
is drawn at one em size on one baseline, so case pairs (o/O, s/S, x/X) stay apart by their size.

The rasteriser is this file's own (outlines from fontTools, nonzero-winding scanline fill with 4x4
supersampling) and uses only IEEE arithmetic, comparisons and `math` scalars: the same font files and
seed give byte-identical images on every machine, whatever the FreeType/Pillow version or thread count.
"""

from __future__ import annotations

import hashlib
import logging
import math
import unicodedata
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dmlbench.config import MAX_IMAGE_SIZE, MAX_SEED
from dmlbench.datasets.sources._arrays import write_array_dataset
from dmlbench.datasets.sources.base import Source, SourceInputs, check_param_keys, int_param
from dmlbench.datasets.spec import DatasetSpec
from dmlbench.errors import ChecksumError, ConfigError, EnvironmentFailure, MissingInputError
from dmlbench.events import Event, EventHandler, emit
from dmlbench.utils.io import sha256_file

log = logging.getLogger(__name__)

#: Bump whenever a change here changes the images for the same fonts and seed.
GENERATOR_VERSION = 1

FACES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
)

# In this order: an earlier character keeps the class when a later one looks the same.
SCRIPTS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("digit", tuple(range(0x30, 0x3A))),
    ("latin", tuple(range(0x41, 0x5B)) + tuple(range(0x61, 0x7B))),
    ("latin-1", tuple(c for c in range(0xC0, 0x100) if c not in (0xD7, 0xF7))),  # minus x and divide signs
    ("latin-extended-a", tuple(range(0x100, 0x180))),
    ("greek", tuple(c for c in range(0x391, 0x3AA) if c != 0x3A2) + tuple(range(0x3B1, 0x3CA))),
    ("cyrillic", tuple(range(0x400, 0x460))),
)

SUPERSAMPLE = 4
EM = 0.62  # em size as a fraction of the image side: accented capitals and descenders fit with the jitter
MIDLINE = 0.345  # em units above the baseline at the image centre: midway between descender and accented caps
CURVE_STEPS = 6  # line segments per quadratic Bezier; at ~20 px per em a segment is under a pixel

# Per-image variation (uniform ranges). Chosen so raw pixels are far from perfect (docs/datasets.md#glyphs).
SCALE = (0.9, 1.1)
ROTATE_DEG = 12.0
SHIFT_PX = 2.5
STROKE = 0.6  # blend weight towards a 3x3 dilation (>0) or erosion (<0)
BLUR_SIGMA = (0.0, 0.8)
INK = (0.75, 1.0)
NOISE_STD = (0.02, 0.08)


@dataclass(frozen=True)
class GlyphClass:
    """One class: a character and the faces (indices into FACES) that draw it."""

    label: int
    codepoint: int
    script: str
    faces: tuple[int, ...]

    @property
    def char(self) -> str:
        return chr(self.codepoint)


@dataclass
class Face:
    """One font file: its cmap and, lazily, its outlines flattened to edges in em units (y up)."""

    path: Path
    sha256: str
    _font: Any = field(repr=False)
    _outlines: dict[int, tuple[np.ndarray, float]] = field(default_factory=dict, repr=False)

    @cached_property
    def cmap(self) -> dict[int, str]:
        return dict(self._font.getBestCmap() or {})

    @cached_property
    def units_per_em(self) -> int:
        return int(self._font["head"].unitsPerEm)

    def has(self, codepoint: int) -> bool:
        """Whether the cmap maps the character (a face that lacks it would draw the .notdef box)."""
        return codepoint in self.cmap

    def outline(self, codepoint: int) -> tuple[np.ndarray, float]:
        """Edges [E, 4] (x0, y0, x1, y1) in em units and the horizontal centre of the ink box."""
        if codepoint not in self._outlines:
            self._outlines[codepoint] = self.glyph_outline(self.cmap[codepoint])
        return self._outlines[codepoint]

    def glyph_outline(self, glyph_name: str) -> tuple[np.ndarray, float]:
        """Edges of any glyph by name (also `.notdef`, for the tests); components are resolved by fontTools."""
        glyf = self._font["glyf"]
        coords, ends, flags = glyf[glyph_name].getCoordinates(glyf)
        points = np.asarray(coords.array, dtype=np.float64).reshape(-1, 2) / self.units_per_em
        on_curve = (np.asarray(flags, dtype=np.int64) & 1).astype(bool)
        all_edges = _glyph_edges(points, on_curve, np.asarray(ends, dtype=np.int64))
        xs = all_edges[:, [0, 2]]
        return all_edges, float((xs.min() + xs.max()) / 2.0) if len(xs) else 0.0


def _contour_next(contour: np.ndarray, count: int) -> np.ndarray:
    """For points grouped by contour id, the index of each point's successor around its closed contour."""
    sizes = np.bincount(contour, minlength=count)
    ends = np.cumsum(sizes) - 1
    nxt = np.arange(1, len(contour) + 1)
    nxt[ends[sizes > 0]] = (ends - sizes + 1)[sizes > 0]
    return nxt


def _glyph_edges(points: np.ndarray, on_curve: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """A glyph's closed TrueType contours as edges [E, 4]: every line as is, every quadratic Bezier as
    CURVE_STEPS segments (two off-curve points in a row imply an on-curve point midway). All contours
    at once: per-contour numpy calls would cost more than the arithmetic."""
    if len(points) == 0:
        return np.zeros((0, 4))
    n_contours = len(ends)
    contour = np.repeat(np.arange(n_contours), np.diff(np.concatenate([[-1], ends])))
    nxt = _contour_next(contour, n_contours)
    both_off = np.flatnonzero(~on_curve & ~on_curve[nxt])
    points = np.insert(points, both_off + 1, (points[both_off] + points[nxt[both_off]]) / 2.0, axis=0)
    on_curve = np.insert(on_curve, both_off + 1, True)
    contour = np.insert(contour, both_off + 1, contour[both_off])
    nxt = _contour_next(contour, n_contours)
    anchors = np.flatnonzero(on_curve)  # every segment runs from one on-curve point to the next
    control = nxt[anchors]
    is_curve = ~on_curve[control]
    finish = np.where(is_curve, nxt[control], control)
    counts = np.where(is_curve, CURVE_STEPS, 1)
    offsets = np.cumsum(counts) - counts
    out = np.empty((int(counts.sum()), 2))
    out[offsets[~is_curve]] = points[finish[~is_curve]]
    t = (np.arange(1, CURVE_STEPS + 1, dtype=np.float64) / CURVE_STEPS)[None, :, None]
    p0 = points[anchors[is_curve]][:, None]
    p1 = points[control[is_curve]][:, None]
    p2 = points[finish[is_curve]][:, None]
    out[offsets[is_curve][:, None] + np.arange(CURVE_STEPS)] = (
        (1 - t) * (1 - t) * p0 + 2 * (1 - t) * t * p1 + t * t * p2
    )
    out_next = _contour_next(np.repeat(contour[anchors], counts), n_contours)
    return np.concatenate([out, out[out_next]], axis=1)


def font_dir(spec_params: dict[str, int | float | str] | None = None) -> Path:
    """The folder with FACES: `params.font_dir` when set, else matplotlib's bundled `mpl-data/fonts/ttf`."""
    given = str((spec_params or {}).get("font_dir", "") or "")
    if given:
        return Path(given).expanduser()
    try:
        import matplotlib
    except ImportError:
        raise EnvironmentFailure(
            "glyphs needs matplotlib (its bundled fonts are the dataset's source)", hint="pip install matplotlib"
        ) from None
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def font_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every face file; MissingInputError naming the first one that is absent."""
    hashes = {}
    for name in FACES:
        path = folder / name
        if not path.is_file():
            raise MissingInputError(
                f"glyphs: font {name} is missing from {folder}",
                hint="glyphs is drawn from matplotlib's bundled fonts; reinstall matplotlib or set params.font_dir",
            )
        hashes[name] = sha256_file(path)
    return hashes


def fonts_fingerprint(hashes: dict[str, str]) -> str:
    """One sha256 for the whole font set (what datasets.toml records as params.fonts_sha256)."""
    text = "".join(f"{name} {hashes[name]}\n" for name in FACES)
    return hashlib.sha256(text.encode()).hexdigest()


def load_faces(folder: Path) -> list[Face]:
    """Open every face (lazily: only the tables and glyphs used are parsed)."""
    from fontTools.ttLib import TTFont, TTLibError

    hashes = font_hashes(folder)
    faces = []
    for name in FACES:
        try:
            font = TTFont(folder / name, lazy=True)
            if "glyf" not in font:
                raise TTLibError("no glyf table (not a TrueType outline font)")
        except (TTLibError, OSError, AssertionError) as err:
            raise ChecksumError(
                f"glyphs: {folder / name} is not a readable TrueType font ({err})",
                hint="reinstall matplotlib (its font files are damaged) or fix params.font_dir",
            ) from None
        faces.append(Face(path=folder / name, sha256=hashes[name], _font=font))
    return faces


def rasterize(edges: np.ndarray, owner: np.ndarray, count: int, size: int) -> np.ndarray:
    """Coverage in [0, 1], float [count, size, size], of edges [E, 4] in pixel coordinates (y down).

    Nonzero winding (TrueType's rule) at SUPERSAMPLE^2 sample points per pixel: each edge adds its
    direction at the first sample right of where it crosses a sample row, and a running sum along the
    row gives every sample's winding number. Sums of +-1 are exact, so the result is too.
    """
    side = size * SUPERSAMPLE
    x0, y0, x1, y1 = edges.T
    # Sample row r (centre (r + 0.5) / SUPERSAMPLE) crosses an edge iff low <= centre < high.
    first = np.clip(np.ceil(np.minimum(y0, y1) * SUPERSAMPLE - 0.5), 0, side).astype(np.int64)
    stop = np.clip(np.ceil(np.maximum(y0, y1) * SUPERSAMPLE - 0.5), 0, side).astype(np.int64)
    spans = stop - first
    edge = np.repeat(np.arange(len(edges)), spans)
    row = first[edge] + np.arange(len(edge)) - np.repeat(np.cumsum(spans) - spans, spans)
    x = x0[edge] + ((row + 0.5) / SUPERSAMPLE - y0[edge]) * (x1 - x0)[edge] / (y1 - y0)[edge]
    column = np.clip(np.floor(x * SUPERSAMPLE - 0.5).astype(np.int64) + 1, 0, side)
    flat = (owner[edge] * side + row) * (side + 1) + column
    upward = (y1 > y0)[edge]
    cells = count * side * (side + 1)
    steps = np.zeros(cells, dtype=np.int16)  # winding numbers of glyphs are tiny; int16 halves the memory traffic
    np.add.at(steps, flat, np.where(upward, 1, -1).astype(np.int16))
    winding = np.cumsum(steps.reshape(count, side, side + 1)[:, :, :side], axis=2, dtype=np.int16)
    inside = (winding != 0).reshape(count, size, SUPERSAMPLE, side).sum(axis=2, dtype=np.uint8)
    hits = inside.reshape(count, size, size, SUPERSAMPLE).sum(axis=3, dtype=np.uint8)
    coverage: np.ndarray = hits / float(SUPERSAMPLE * SUPERSAMPLE)
    return coverage


def place(
    outline: tuple[np.ndarray, float],
    size: int,
    *,
    scale: float = 1.0,
    angle_deg: float = 0.0,
    dx: float = 0.0,
    dy: float = 0.0,
) -> np.ndarray:
    """Edges of one glyph in pixel coordinates: one em size for all glyphs, on a fixed baseline.

    The glyph's ink is centred horizontally; vertically only the baseline is fixed (an `o` sits lower
    and is smaller than an `O`). Rotation and scaling are about the image centre.
    """
    edges, centre_x = outline
    em = EM * size * scale
    cos, sin = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    out = np.empty_like(edges)
    for i in (0, 2):
        a = (edges[:, i] - centre_x) * em
        b = (edges[:, i + 1] - MIDLINE) * em
        out[:, i] = size / 2.0 + dx + (cos * a - sin * b)
        out[:, i + 1] = size / 2.0 + dy - (sin * a + cos * b)
    return out


def canonical(faces: list[Face], codepoint: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The glyph with no variation on every face ([faces, size, size]; zeros where a face lacks it) and
    which faces draw it: in the cmap, with a non-empty outline and some ink."""
    has = np.array([f.has(codepoint) and len(f.outline(codepoint)[0]) > 0 for f in faces])
    placed = [place(faces[i].outline(codepoint), size) for i in np.flatnonzero(has)]
    images = np.zeros((len(faces), size, size))
    if placed:
        owner = np.concatenate([np.full(len(e), n, dtype=np.int64) for n, e in enumerate(placed)])
        images[has] = rasterize(np.concatenate(placed), owner, len(placed), size)
    return images, has & (images.sum(axis=(1, 2)) > 0)


def select_classes(faces: list[Face], size: int, threshold: float) -> tuple[list[GlyphClass], dict[int, int]]:
    """Keep every candidate character that some face draws and that is no homoglyph of an earlier class.

    Two characters are compared on each face that draws both: d = sum |a - b| / (sum a + sum b) over
    their canonical renders (0 = identical, 1 = no overlap). The median over the shared faces below
    `threshold` makes the later one a homoglyph: the median, because one face drawing a Cyrillic italic
    its own way must not make Cyrillic y a class of its own. Returns the classes and {dropped: kept}.
    """
    kept: list[GlyphClass] = []
    most = sum(len(codepoints) for _, codepoints in SCRIPTS)
    # float32 is exact here: coverages are multiples of 1/16 and their sums stay below 2^24 sixteenths.
    renders = np.zeros((most, len(faces), size * size), dtype=np.float32)
    masks = np.zeros((most, len(faces)), dtype=bool)
    dropped: dict[int, int] = {}
    for script, codepoints in SCRIPTS:
        for codepoint in codepoints:
            images, has = canonical(faces, codepoint, size)
            if not has.any():
                log.info("glyphs: no face draws U+%04X; skipped", codepoint)
                continue
            flat = images.reshape(len(faces), -1).astype(np.float32)
            match = _nearest_homoglyph(renders[: len(kept)], masks[: len(kept)], flat, has, threshold)
            if match is not None:
                dropped[codepoint] = kept[match].codepoint
                continue
            renders[len(kept)], masks[len(kept)] = flat, has
            kept.append(GlyphClass(len(kept), codepoint, script, tuple(int(i) for i in np.flatnonzero(has))))
    return kept, dropped


def _median_distance(other: np.ndarray, mask: np.ndarray, distance: np.ndarray) -> np.ndarray:
    values = np.where(mask, distance, np.nan)
    out = np.full(len(values), np.inf)
    some = mask.any(axis=1)
    out[some] = np.nanmedian(values[some], axis=1)
    return out


def _nearest_homoglyph(
    renders: np.ndarray, masks: np.ndarray, flat: np.ndarray, has: np.ndarray, threshold: float
) -> int | None:
    """Index of the kept class this character nearly equals, or None."""
    if len(renders) == 0:
        return None
    shared = masks & has
    mass_kept, mass_new = renders.sum(axis=2), flat.sum(axis=1)
    total = np.maximum(mass_kept + mass_new, 1e-12)
    # |ma - mb| <= sum |a - b| on every face, and the median is monotone: a cheap exact pre-filter.
    bound = _median_distance(renders, shared, np.abs(mass_kept - mass_new) / total)
    candidates = np.flatnonzero(bound < threshold)
    if len(candidates) == 0:
        return None
    diff = np.abs(renders[candidates] - flat).sum(axis=2) / total[candidates]
    median = _median_distance(renders[candidates], shared[candidates], diff)
    best = int(np.argmin(median))
    return int(candidates[best]) if median[best] < threshold else None


def _shifted_max(images: np.ndarray, pick: Any) -> np.ndarray:
    """3x3 max (dilation) or min (erosion) of [n, h, w] images, separably."""
    h, w = images.shape[1:]
    fill = 0.0 if pick is np.maximum else 1.0
    pad = np.pad(images, ((0, 0), (1, 1), (1, 1)), constant_values=fill)
    rows = pick(pick(pad[:, :, :-2], pad[:, :, 1:-1]), pad[:, :, 2:])
    out: np.ndarray = pick(pick(rows[:, :-2], rows[:, 1:-1]), rows[:, 2:])[:, :h, :w]
    return out


def _blur(images: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """Separable Gaussian blur with one sigma per image (radius 2; sigma 0 leaves the image unchanged)."""
    radius = 2
    kernels = np.zeros((len(sigmas), 2 * radius + 1))
    for n, sigma in enumerate(sigmas):
        if sigma <= 0:
            kernels[n, radius] = 1.0
            continue
        weights = [math.exp(-(k * k) / (2.0 * float(sigma) ** 2)) for k in range(-radius, radius + 1)]
        total = math.fsum(weights)
        kernels[n] = [w / total for w in weights]
    h, w = images.shape[1:]
    pad = np.pad(images, ((0, 0), (radius, radius), (radius, radius)))
    across = sum(kernels[:, k, None, None] * pad[:, :, k : k + w] for k in range(2 * radius + 1))
    down = sum(kernels[:, k, None, None] * across[:, k : k + h, :] for k in range(2 * radius + 1))
    return np.asarray(down)


def render_class(glyph: GlyphClass, faces: list[Face], count: int, size: int, seed: int) -> np.ndarray:
    """`count` varied uint8 images of one class. Its own random stream (seed, codepoint): a class's images
    do not depend on which other classes exist."""
    rng = np.random.default_rng([seed, glyph.codepoint])
    face_pick = rng.integers(len(glyph.faces), size=count)
    scales = rng.uniform(*SCALE, size=count)
    angles = rng.uniform(-ROTATE_DEG, ROTATE_DEG, size=count)
    shifts = rng.uniform(-SHIFT_PX, SHIFT_PX, size=(count, 2))
    strokes = rng.uniform(-STROKE, STROKE, size=count)
    sigmas = rng.uniform(*BLUR_SIGMA, size=count)
    inks = rng.uniform(*INK, size=count)
    noise_std = rng.uniform(*NOISE_STD, size=count)
    noise = rng.standard_normal(size=(count, size, size))

    placed = [
        place(
            faces[glyph.faces[int(face_pick[n])]].outline(glyph.codepoint),
            size,
            scale=float(scales[n]),
            angle_deg=float(angles[n]),
            dx=float(shifts[n, 0]),
            dy=float(shifts[n, 1]),
        )
        for n in range(count)
    ]
    owner = np.concatenate([np.full(len(e), n, dtype=np.int64) for n, e in enumerate(placed)])
    coverage = rasterize(np.concatenate(placed), owner, count, size)
    weight = np.abs(strokes)[:, None, None]
    thick = (1 - weight) * coverage + weight * _shifted_max(coverage, np.maximum)
    thin = (1 - weight) * coverage + weight * _shifted_max(coverage, np.minimum)
    stroked = np.where((strokes > 0)[:, None, None], thick, thin)
    blurred = _blur(stroked, sigmas)
    # Peak at the ink level: erosion plus blur would otherwise fade hairline faces into the noise.
    peak = blurred.reshape(count, -1).max(axis=1)
    image = (inks / np.maximum(peak, 1e-6))[:, None, None] * blurred + noise_std[:, None, None] * noise
    out: np.ndarray = np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    return out


class GlyphsSource(Source):
    """Params: images_per_class, size, seed, homoglyph_threshold, fonts_sha256 (the font set the catalog's
    counts were measured with), optional font_dir (default: matplotlib's fonts)."""

    needs_files = False
    PARAMS = ("images_per_class", "size", "seed", "homoglyph_threshold", "fonts_sha256", "font_dir")

    def __init__(self) -> None:
        self._info: dict[str, Any] = {}

    @classmethod
    def check_params(cls, spec: DatasetSpec) -> None:
        cls._params(spec)

    @staticmethod
    def _params(spec: DatasetSpec) -> tuple[int, int, int, float]:
        """images_per_class, size, seed and homoglyph_threshold, each within what the renderer accepts."""
        check_param_keys(spec, GlyphsSource.PARAMS)
        per_class = int_param(spec, "images_per_class", low=2, high=100_000)
        size = int_param(spec, "size", low=8, high=MAX_IMAGE_SIZE)
        seed = int_param(spec, "seed", low=0, high=MAX_SEED)
        threshold = spec.params.get("homoglyph_threshold", 0.0)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise ConfigError(
                f"[{spec.name}] params.homoglyph_threshold must be a number in 0..1, got {threshold!r}",
                hint="see [glyphs] in datasets.toml",
            )
        for key in ("fonts_sha256", "font_dir"):
            if not isinstance(spec.params.get(key, ""), str):
                raise ConfigError(f"[{spec.name}] params.{key} must be a string", hint="see [glyphs] in datasets.toml")
        return per_class, size, seed, float(threshold)

    def build(
        self, spec: DatasetSpec, inputs: SourceInputs, staging: Path, on_event: EventHandler | None
    ) -> pd.DataFrame:
        """Select the classes, render every image, write images.npy and meta/classes.csv."""
        per_class, size, seed, threshold = self._params(spec)
        folder = font_dir(spec.params)
        faces = load_faces(folder)
        hashes = {f.path.name: f.sha256 for f in faces}
        fingerprint = fonts_fingerprint(hashes)
        expected = str(spec.params.get("fonts_sha256", ""))
        same_fonts = fingerprint == expected
        if not same_fonts:
            message = (
                f"{spec.name}: the fonts in {folder} are not the ones datasets.toml was made with "
                f"(font set sha256 {fingerprint[:12]}, catalog {expected[:12] or 'none'}): "
                "the images will differ from other machines' and prepared.json records fonts_match_catalog=false"
            )
            log.warning(message)
            emit(on_event, Event("log", spec.name, message=message))

        classes, dropped = select_classes(faces, size, float(threshold))
        want = spec.expect_classes.get("train", 0) + spec.expect_classes.get("test", 0)
        if spec.expect_classes and len(classes) != want:
            raise ChecksumError(
                f"{spec.name}: these fonts give {len(classes)} classes, the catalog expects {want}",
                hint="the fonts differ from the ones datasets.toml was made with"
                if not same_fonts
                else "the generator changed without datasets.toml; update its expected counts",
            )
        task = f"render {spec.name}"
        emit(on_event, Event("start", task, total=len(classes), unit="classes"))
        images = np.empty((len(classes) * per_class, size, size), dtype=np.uint8)
        for glyph in classes:
            images[glyph.label * per_class : (glyph.label + 1) * per_class] = render_class(
                glyph, faces, per_class, size, seed
            )
            emit(on_event, Event("advance", task, amount=1))
        emit(on_event, Event("finish", task))
        labels = np.repeat(np.arange(len(classes), dtype=np.int64), per_class)
        frame = write_array_dataset(staging, images, labels)
        (staging / "meta").mkdir(exist_ok=True)
        pd.DataFrame(
            {
                "label": [g.label for g in classes],
                "codepoint": [f"U+{g.codepoint:04X}" for g in classes],
                "char": [g.char for g in classes],
                "name": [unicodedata.name(g.char, "") for g in classes],
                "script": [g.script for g in classes],
                "faces": [" ".join(FACES[i].removesuffix(".ttf") for i in g.faces) for g in classes],
            }
        ).to_csv(staging / "meta" / "classes.csv", index=False)
        self._info = {
            "generator_version": GENERATOR_VERSION,
            "font_dir": str(folder),
            "fonts": hashes,
            "fonts_sha256": fingerprint,
            "fonts_match_catalog": same_fonts,
            "classes": len(classes),
            "homoglyphs": {chr(a): chr(b) for a, b in dropped.items()},
        }
        return frame

    def build_info(self) -> dict[str, Any]:
        """Generator version, font file sha256s and the dropped homoglyphs, for prepared.json."""
        return dict(self._info)

    def stale_reason(self, spec: DatasetSpec, info: dict[str, Any]) -> str | None:
        """Why an already prepared copy differs from what these fonts and this generator would make."""
        recorded = info.get("source_info", {})
        version = recorded.get("generator_version")
        if version != GENERATOR_VERSION:
            return (
                f"{spec.name} was prepared by glyphs generator version {version}, this dmlbench has "
                f"{GENERATOR_VERSION}: run `dmlbench prepare {spec.name} --force` to rebuild it"
            )
        try:
            current = font_hashes(font_dir(spec.params))
        except (MissingInputError, EnvironmentFailure) as err:
            return f"{spec.name}: cannot check its fonts ({err.message})"
        changed = sorted(name for name in FACES if recorded.get("fonts", {}).get(name) != current[name])
        if changed:
            return (
                f"{spec.name} was prepared with other fonts ({', '.join(changed)} differ from this machine's): "
                f"run `dmlbench prepare {spec.name} --force` to rebuild it"
            )
        return None
