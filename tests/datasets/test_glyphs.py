"""glyphs: determinism, no missing-glyph renders, homoglyphs, catalog counts, interleaved split, font changes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dmlbench.datasets import PreparedDataset, get_spec, prepare
from dmlbench.datasets.sources import glyphs
from dmlbench.datasets.spec import DatasetSpec
from dmlbench.errors import ConfigError, MissingInputError
from dmlbench.events import Event
from dmlbench.paths import Places


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> PreparedDataset:
    return prepare("glyphs", Places.of(tmp_path_factory.mktemp("glyphs-data")))


@pytest.fixture(scope="module")
def classes(prepared: PreparedDataset) -> pd.DataFrame:
    return pd.read_csv(prepared.root / "meta" / "classes.csv", keep_default_na=False)


@pytest.fixture(scope="module")
def faces() -> list[glyphs.Face]:
    return glyphs.load_faces(glyphs.font_dir())


def _spec(**params: object) -> DatasetSpec:
    table = get_spec("glyphs").model_dump()
    table["params"] = {**table["params"], **params}
    return DatasetSpec(**table)


def test_counts_match_the_catalog_and_the_contract(prepared: PreparedDataset) -> None:
    spec = get_spec("glyphs")
    splits = prepared.info["splits"]
    for split in ("train", "test"):
        assert splits[split]["images"] == spec.expect_images[split]
        assert splits[split]["classes"] == spec.expect_classes[split]
    assert splits["train"]["classes"] + splits["test"]["classes"] >= 300
    images = np.load(prepared.root / "images.npy")
    assert images.shape == (len(prepared.index), 32, 32) and images.dtype == np.uint8
    assert prepared.info["image_size"] == [32, 32] and prepared.info["channels"] == 1
    counts = prepared.index.groupby("label").size()
    assert (counts == spec.params["images_per_class"]).all()


def test_split_is_interleaved_disjoint_and_covers_every_script(
    prepared: PreparedDataset, classes: pd.DataFrame
) -> None:
    train = set(prepared.split("train")["label"])
    test = set(prepared.split("test")["label"])
    assert not train & test and prepared.info["train_test_disjoint"] is True
    assert train | test == set(range(len(classes)))
    assert all(label % 2 == 0 for label in train) and all(label % 2 == 1 for label in test)
    script = classes.set_index("label")["script"]
    scripts = {name for name, _ in glyphs.SCRIPTS}
    assert set(script[sorted(train)]) == scripts == set(script[sorted(test)])


def test_prepared_json_records_fonts_and_generator(prepared: PreparedDataset) -> None:
    info = json.loads((prepared.root / "prepared.json").read_text())["source_info"]
    assert info["generator_version"] == glyphs.GENERATOR_VERSION
    assert set(info["fonts"]) == set(glyphs.FACES)
    folder = glyphs.font_dir()
    assert info["fonts"] == glyphs.font_hashes(folder)
    assert info["fonts_match_catalog"] is True
    assert info["fonts_sha256"] == get_spec("glyphs").params["fonts_sha256"]


def test_homoglyphs_are_one_class_and_case_pairs_stay_apart(prepared: PreparedDataset, classes: pd.DataFrame) -> None:
    chars = set(classes["char"])
    dropped = prepared.info["source_info"]["homoglyphs"]
    assert dropped["\u0391"] == "A" and dropped["\u0410"] == "A"  # Greek Alpha, Cyrillic A
    assert dropped["\u03bf"] == "o" and dropped["\u043e"] == "o"  # Greek omicron, Cyrillic o
    assert "\u0391" not in chars and "\u0410" not in chars and "A" in chars
    for lower, upper in ("oO", "sS", "xX", "cC", "vV", "zZ", "wW"):
        assert lower in chars and upper in chars, (lower, upper)
    assert set(dropped).isdisjoint(chars)
    assert set(dropped.values()) <= chars


def test_every_render_uses_a_face_that_has_the_glyph(
    prepared: PreparedDataset, classes: pd.DataFrame, faces: list[glyphs.Face]
) -> None:
    by_name = {f.path.name.removesuffix(".ttf"): f for f in faces}
    for row in classes.to_dict("records"):
        used = [by_name[name] for name in str(row["faces"]).split()]
        assert used and all(face.has(ord(row["char"])) for face in used), row["char"]
    # A face that lacks a character is never offered for it.
    assert all(glyphs.canonical(faces, cp, 32)[1][i] == faces[i].has(cp) for cp in (0x41, 0x400) for i in range(16))
    assert not faces[12].has(0x40D)  # STIX General has no Cyrillic I with grave: only DejaVu draws it
    drawn_by = classes.loc[classes["char"] == "\u040d", "faces"]
    assert len(drawn_by) == 1 and "STIX" not in drawn_by.iloc[0] and "DejaVuSerif" in drawn_by.iloc[0]


def test_renders_are_never_notdef_boxes_or_blank(
    prepared: PreparedDataset, classes: pd.DataFrame, faces: list[glyphs.Face]
) -> None:
    boxes = []
    for face in faces:
        edges = glyphs.place(face.glyph_outline(".notdef"), 32)
        boxes.append(glyphs.rasterize(edges, np.zeros(len(edges), dtype=np.int64), 1, 32)[0])
    notdef = np.stack(boxes)
    assert (notdef.sum(axis=(1, 2)) > 0).sum() >= 12  # DejaVu draws a box; a blank .notdef is caught as blank
    for char in classes["char"]:
        images, has = glyphs.canonical(faces, ord(char), 32)
        ink = images.sum(axis=(1, 2))
        assert (ink[has] > 0).all(), char
        distance = np.abs(images - notdef).sum(axis=(1, 2)) / np.maximum(ink + notdef.sum(axis=(1, 2)), 1e-12)
        assert (distance[has] > 0.2).all(), char
    images = np.load(prepared.root / "images.npy").astype(np.float64) / 255.0
    flat = images.reshape(len(images), -1)
    assert flat.max(axis=1).min() >= 0.6  # every glyph peaks at its ink level (>= 0.75) before noise
    assert ((flat > 0.5).sum(axis=1) >= 4).all()  # and has strokes, not one bright pixel


def test_same_seed_same_bytes_other_seed_other_bytes(prepared: PreparedDataset, faces: list[glyphs.Face]) -> None:
    images = np.load(prepared.root / "images.npy")
    index = {f.path.name.removesuffix(".ttf"): i for i, f in enumerate(faces)}
    table = pd.read_csv(prepared.root / "meta" / "classes.csv", keep_default_na=False)
    for row in table.iloc[[0, 101, len(table) - 1]].to_dict("records"):
        faces_used = tuple(index[name] for name in str(row["faces"]).split())
        glyph = glyphs.GlyphClass(int(row["label"]), int(str(row["codepoint"])[2:], 16), str(row["script"]), faces_used)
        again = glyphs.render_class(glyph, faces, 20, 32, seed=0)
        assert np.array_equal(again, images[glyph.label * 20 : (glyph.label + 1) * 20])
        other = glyphs.render_class(glyph, faces, 20, 32, seed=1)
        assert not np.array_equal(other, again)
    images_sha = prepared.info["index_sha256"]
    assert images_sha == prepared.fingerprint


def test_different_fonts_are_reported(
    prepared: PreparedDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(glyphs, "SCRIPTS", glyphs.SCRIPTS[:2])  # digits and Latin: the font check, quickly
    fonts = tmp_path / "fonts"
    shutil.copytree(glyphs.font_dir(), fonts, ignore=lambda d, names: [n for n in names if n not in glyphs.FACES])
    shutil.copyfile(fonts / "DejaVuSans-Bold.ttf", fonts / "DejaVuSans.ttf")  # another, valid font file
    table = _spec(font_dir=str(fonts), images_per_class=2).model_dump()
    table.update(expect_images={}, expect_classes={})
    events: list[Event] = []
    other = prepare("glyphs", Places.of(tmp_path / "data"), spec=DatasetSpec(**table), on_event=events.append)
    info = other.info["source_info"]
    assert info["fonts_match_catalog"] is False
    assert info["fonts"]["DejaVuSans.ttf"] != prepared.info["source_info"]["fonts"]["DejaVuSans.ttf"]
    assert any("not the ones datasets.toml was made with" in e.message for e in events)
    # The already prepared copy is reused, with a warning that names the changed font.
    events.clear()
    prepare("glyphs", Places.of(prepared.root.parent), spec=_spec(font_dir=str(fonts)), on_event=events.append)
    assert any("other fonts (DejaVuSans.ttf" in e.message and "--force" in e.message for e in events)


def test_missing_font_and_bad_params_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match="font DejaVuSans.ttf is missing") as info:
        prepare("glyphs", Places.of(tmp_path), spec=_spec(font_dir=str(tmp_path)))
    assert info.value.exit_code == 3
    with pytest.raises(ConfigError, match="images_per_class"):
        prepare("glyphs", Places.of(tmp_path), spec=_spec(images_per_class="many"))


def test_alternate_split_rule_is_validated() -> None:
    table = get_spec("glyphs").model_dump()
    with pytest.raises(ValueError, match="different parity"):
        DatasetSpec(**{**table, "test_classes": (2, 348)})
    with pytest.raises(ValueError, match="overlap"):
        DatasetSpec(**{**table, "split_rule": "ranges"})
    sop = get_spec("sop").model_dump()
    with pytest.raises(ValueError, match="applies to protocol 'class-split' only"):
        DatasetSpec(**{**sop, "split_rule": "alternate"})
