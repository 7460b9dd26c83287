"""Builders for datasets made from the user's files: a folder of class folders and OML CSVs, drawn here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SIDE = 32


def glyph_image(label: int, index: int, side: int = SIDE) -> Image.Image:
    """A letter per class at a jittered place, with noise: every file's bytes differ."""
    rng = np.random.default_rng(label * 1000 + index)
    image = Image.new("RGB", (side, side), (255, 255, 255))
    ImageDraw.Draw(image).text(
        (4 + int(rng.integers(0, 6)), 4 + int(rng.integers(0, 6))), chr(65 + label % 26), fill=(20, 20, 20)
    )
    pixels = np.asarray(image).astype(np.float64) + rng.normal(0, 8, (side, side, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_folder(root: Path, classes: int = 12, per_class: int = 6, names: list[str] | None = None) -> Path:
    """ROOT/<class name>/<i>.png; class names with spaces and accents unless `names` are given."""
    names = names or [f"clâss {c:02d}" for c in range(classes)]
    for label, name in enumerate(names):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            glyph_image(label, i).save(folder / f"{i}.png")
    return root


def write_oml_csv(
    root: Path,
    *,
    train_classes: int = 6,
    val_classes: int = 4,
    per_class: int = 6,
    sequences: bool = True,
    boxes: bool = False,
) -> Path:
    """root/df.csv in open-metric-learning's format with relative paths; validation rows alternate between
    query only, gallery only and both; rows come in sequences of 2 within each class."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    lines = ["label,path,split,is_query,is_gallery,category" + (",sequence" if sequences else "")]
    if boxes:
        lines[0] += ",x_1,x_2,y_1,y_2"
    for label in range(train_classes + val_classes):
        split = "train" if label < train_classes else "validation"
        for i in range(per_class):
            name = f"images/{label}_{i}.png"
            glyph_image(label, i).save(root / name)
            if split == "train":
                flags = ","
            else:
                flags = ("True,False", "False,True", "True,True")[i % 3]
            row = f"{label},{name},{split},{flags},cat{label % 2}"
            if sequences:
                row += f",seq-{label}-{i // 2}"
            if boxes:
                row += ",2,30,1,31" if i % 2 else ",,,,"
            lines.append(row)
    csv = root / "df.csv"
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return csv
