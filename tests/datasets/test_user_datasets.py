"""Datasets from the user's files: `prepare PATH` for a folder of class folders and an OML CSV, every
image checked (one error naming the file or row, nothing left behind), normalised, and the spec recorded."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner
from user_images import glyph_image, write_folder, write_oml_csv

from dmlbench.cli import app
from dmlbench.datasets import get_spec, load_catalog, open_prepared
from dmlbench.datasets.images import max_pixels
from dmlbench.datasets.sources._user import CLASSES_FILE, ORIGINS_FILE
from dmlbench.datasets.user import looks_like_path, prepare_path
from dmlbench.errors import MissingInputError, UsageError
from dmlbench.paths import Places

runner = CliRunner()


def stored_image(data_root: Path, name: str, original: str) -> Image.Image:
    """The prepared copy of the user's file whose path ends with `original`."""
    root = data_root / name
    origins = pd.read_csv(root / ORIGINS_FILE)
    row = origins[origins["original"].str.endswith(original)].iloc[0]
    image = Image.open(root / row["path"])
    image.load()
    return image


def test_folder_prepares_with_names_ids_split_and_fitted_defaults(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "pngs")
    data_root = tmp_path / "data"
    prepared = prepare_path(folder, Places.of(data_root))
    assert prepared.name == "pngs"
    classes = pd.read_csv(prepared.root / CLASSES_FILE)
    assert classes["name"].tolist() == sorted(p.name for p in folder.iterdir())  # ids = sorted name order
    index = prepared.index
    assert len(index) == 72 and set(index["split"]) == {"train", "test"}
    train, test = (set(index.loc[index["split"] == s, "label"]) for s in ("train", "test"))
    assert len(train) == len(test) == 6 and not train & test  # the default: half the classes, seed 0
    assert prepared.info["train_test_disjoint"] is True
    spec = prepared.info["spec"]
    assert (spec["backbone"], spec["image_size"], spec["channels"]) == ("small_cnn", SIDE_OF_TEST_IMAGES, 3)
    # P x K that the 6 training classes of 6 images can fill
    assert spec["default_batch_classes"] <= 6 and spec["default_batch_per_class"] <= 6
    # later commands find it by name, with no path and no catalog
    assert get_spec("pngs", Places.of(data_root)).params["path"] == str(folder.resolve())
    assert "pngs" in load_catalog(Places.of(data_root))
    # the prepared copies stand alone: the user's folder may go away
    for image in folder.rglob("*.png"):
        image.unlink()
    reopened = open_prepared("pngs", data_root)
    assert all((reopened.root / p).is_file() for p in reopened.index["path"])


SIDE_OF_TEST_IMAGES = 32


def test_same_folder_again_is_instant_and_other_split_needs_force(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "pngs")
    data_root = tmp_path / "data"
    first = prepare_path(folder, Places.of(data_root))
    again = prepare_path(folder, Places.of(data_root))
    assert again.info["created"] == first.info["created"] and again.fingerprint == first.fingerprint
    with pytest.raises(UsageError, match="another split"):
        prepare_path(folder, Places.of(data_root), test_classes="alternate")
    alternate = prepare_path(folder, Places.of(data_root), test_classes="alternate", force=True)
    assert sorted(set(alternate.split("test")["label"])) == [1, 3, 5, 7, 9, 11]


@pytest.mark.parametrize(
    ("option", "seed", "expected_test"),
    [
        ("0.25", 3, None),
        ("clâss 00,clâss 05", None, [0, 5]),
    ],
)
def test_split_rules(tmp_path: Path, option: str, seed: int | None, expected_test: list[int] | None) -> None:
    folder = write_folder(tmp_path / "pngs")
    prepared = prepare_path(folder, Places.of(tmp_path / "data"), test_classes=option, split_seed=seed)
    test = sorted(set(prepared.split("test")["label"]))
    if expected_test is None:
        assert len(test) == 3  # a quarter of 12, drawn with seed 3
        other = prepare_path(folder, Places.of(tmp_path / "d2"), test_classes=option, split_seed=4)
        assert sorted(set(other.split("test")["label"])) != test  # the seed draws the classes
    else:
        assert test == expected_test


def test_class_list_from_a_file_and_unknown_class(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "pngs")
    listing = tmp_path / "test.txt"
    listing.write_text("clâss 01\nclâss 02\n", encoding="utf-8")
    prepared = prepare_path(folder, Places.of(tmp_path / "data"), test_classes=str(listing))
    assert sorted(set(prepared.split("test")["label"])) == [1, 2]
    with pytest.raises(UsageError, match="'class 03' is not a class folder"):
        prepare_path(folder, Places.of(tmp_path / "d2"), test_classes="class 03,clâss 04")
    assert not (tmp_path / "d2" / "pngs").exists()


def _truncated_png() -> bytes:
    buffer = io.BytesIO()
    glyph_image(0, 99, side=64).save(buffer, format="PNG")
    return buffer.getvalue()[:-200]


def _truncated_jpeg() -> bytes:
    buffer = io.BytesIO()
    glyph_image(0, 99, side=64).save(buffer, format="JPEG")
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


def _bomb_png() -> bytes:
    """A valid 1-bit PNG header and image just over PIL's decompression-bomb limit (a few kB of zlib)."""
    side = int(np.ceil(np.sqrt(max_pixels() + 1)))
    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    raw = zlib.compress(row * side, 9)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("file_name", "content", "reason"),
    [
        ("broken.png", _truncated_png(), "truncated or corrupt"),
        ("broken.jpg", _truncated_jpeg(), "truncated or corrupt"),
        ("notes.jpg", b"these are my notes, not a photo", "not an image file"),
        ("empty.png", b"", "empty file"),
        ("huge.png", _bomb_png(), "decompression bomb"),
    ],
)
def test_each_defect_is_one_error_naming_the_file_and_nothing_is_left(
    tmp_path: Path, file_name: str, content: bytes, reason: str
) -> None:
    folder = write_folder(tmp_path / "pngs")
    (folder / "clâss 03" / file_name).write_bytes(content)
    data_root = tmp_path / "data"
    result = runner.invoke(app, ["prepare", str(folder), "--data-root", str(data_root)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and f"clâss 03/{file_name}" in lines[0] and reason in lines[0], result.output
    assert "Traceback" not in result.output
    assert not data_root.exists() or not any(data_root.iterdir())


def test_duplicates_are_listed_and_kept_only_when_allowed(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "pngs")
    (folder / "clâss 07" / "copy.png").write_bytes((folder / "clâss 02" / "1.png").read_bytes())
    data_root = tmp_path / "data"
    with pytest.raises(UsageError, match=r"1 group\(s\) of byte-identical images: clâss 02/1.png = clâss 07/copy.png"):
        prepare_path(folder, Places.of(data_root))
    assert not data_root.exists() or not any(data_root.iterdir())
    result = runner.invoke(app, ["prepare", str(folder), "--data-root", str(data_root), "--allow-duplicates"])
    assert result.exit_code == 0, result.output
    assert "identical images: clâss 02/1.png = clâss 07/copy.png" in result.output
    info = open_prepared("pngs", data_root).info
    assert info["source_info"]["duplicates"] == [["clâss 02/1.png", "clâss 07/copy.png"]]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "pngs")
    wide = np.zeros((20, 40, 3), dtype=np.uint8)
    wide[:, :20] = 255  # left half white: after a 90 degree turn it is the top or bottom half
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(wide).save(folder / "clâss 01" / "turned.jpg", exif=exif.tobytes(), quality=95)
    data_root = tmp_path / "data"
    prepared = prepare_path(folder, Places.of(data_root))
    upright = stored_image(data_root, "pngs", "turned.jpg")
    assert upright.size == (20, 40)  # width x height after the turn
    pixels = np.asarray(upright.convert("L"), dtype=np.float64)
    assert pixels[:20].mean() > 200 and pixels[20:].mean() < 50  # camera's left (white) is now the top
    assert "EXIF orientation 6" in " ".join(prepared.info["source_info"]["converted_examples"])


def test_modes_are_converted(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "pngs")
    target = folder / "clâss 04"
    rgba = np.zeros((16, 16, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[:8, :, 3] = 255  # top half opaque red, bottom half transparent
    Image.fromarray(rgba, "RGBA").save(target / "alpha.png")
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(target / "cmyk.jpg", quality=95)  # red in CMYK
    palette = Image.new("P", (16, 16), 1)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    palette.info["transparency"] = 1  # every pixel transparent
    palette.save(target / "palette.png", transparency=1)
    deep = np.full((16, 16), 65535, dtype=np.uint16)
    deep[:, :8] = 0
    Image.fromarray(deep).save(target / "deep.png")  # 16-bit grayscale
    data_root = tmp_path / "data"
    prepare_path(folder, Places.of(data_root))
    over_white = np.asarray(stored_image(data_root, "pngs", "alpha.png"))
    assert over_white.shape == (16, 16, 3)
    assert (over_white[:8] == (255, 0, 0)).all() and (over_white[8:] == 255).all()
    cmyk = np.asarray(stored_image(data_root, "pngs", "cmyk.jpg"))
    assert cmyk.shape == (16, 16, 3) and cmyk[..., 0].mean() > 200 and cmyk[..., 1].mean() < 60
    assert (np.asarray(stored_image(data_root, "pngs", "palette.png")) == 255).all()
    gray = stored_image(data_root, "pngs", "deep.png")
    assert gray.mode == "L"
    assert (np.asarray(gray)[:, :8] == 0).all() and (np.asarray(gray)[:, 8:] == 255).all()


def test_folder_layout_errors(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "pngs")
    glyph_image(0, 1).save(folder / "loose.png")
    with pytest.raises(UsageError, match="loose.png is not inside a class folder"):
        prepare_path(folder, Places.of(tmp_path / "data"))
    few = write_folder(tmp_path / "few", classes=3)
    with pytest.raises(UsageError, match="3 class subfolder"):
        prepare_path(few, Places.of(tmp_path / "data"))
    with pytest.raises(MissingInputError):
        prepare_path(tmp_path / "absent", Places.of(tmp_path / "data"))
    renamed = write_folder(tmp_path / "digits")
    with pytest.raises(UsageError, match="name of a catalog dataset"):
        prepare_path(renamed, Places.of(tmp_path / "data"))
    assert prepare_path(renamed, Places.of(tmp_path / "data"), name="my-digits").name == "my-digits"
    with pytest.raises(UsageError, match="already prepared from"):
        prepare_path(folder, Places.of(tmp_path / "data"), name="my-digits")
    assert looks_like_path("./pngs") and looks_like_path("df.csv") and not looks_like_path("glyphs")


def test_oml_csv_rows_become_train_query_gallery_with_sequences(tmp_path: Path) -> None:
    csv = write_oml_csv(tmp_path / "oml", boxes=True)
    prepared = prepare_path(csv, Places.of(tmp_path / "data"))
    assert prepared.name == "df" and prepared.info["protocol"] == "query-gallery"
    index = prepared.index
    counts = index["split"].value_counts().to_dict()
    # 4 validation classes x 6 rows: i % 3 == 0 query only, 1 gallery only, 2 both
    assert counts == {"train": 36, "query": 16, "gallery": 16}
    both = index[index["split"] != "train"].groupby("path")["split"].nunique()
    assert (both == 2).sum() == 8  # a row that is both is one stored image with two index rows
    pair = index[index["path"] == both[both == 2].index[0]]
    assert pair["sequence"].nunique() == 1  # ... and one sequence id: a query never finds itself
    # boxes: the stored copy is the crop (x_1=2, x_2=30, y_1=1, y_2=31); a row with empty box cells keeps it all
    sizes = {Image.open(prepared.root / p).size for p in index["path"]}
    assert sizes == {(28, 30), (32, 32)}
    assert prepared.info["source_info"]["boxes_cropped"] == 30
    assert prepared.info["train_test_disjoint"] is True


def test_oml_boxes_crop_objects_of_one_photo_and_are_checked(tmp_path: Path) -> None:
    csv = write_oml_csv(tmp_path / "oml", boxes=True)
    lines = csv.read_text(encoding="utf-8").splitlines()
    # one photo, two objects: row 3 (images/0_1.png, box 2..30) again with another box
    lines.append("0,images/0_1.png,train,,,cat0,seq-0-0,0,10,0,10")
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    prepared = prepare_path(csv, Places.of(tmp_path / "data"))
    assert len(prepared.split("train")) == 37
    lines.append("0,images/0_1.png,train,,,cat0,seq-0-0,0,10,0,10")  # the same file and box twice
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(UsageError, match="byte-identical images: df.csv row 62 .* = df.csv row 63"):
        prepare_path(csv, Places.of(tmp_path / "d2"))
    lines[-1] = "0,images/0_3.png,train,,,cat0,seq-0-1,0,40,0,10"  # wider than the 32 px image
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"df.csv row 63 \(images/0_3.png\): box x_2=40 .* outside the 32 x 32"):
        prepare_path(csv, Places.of(tmp_path / "d2"))


def test_oml_csv_classification_split_is_accepted_with_a_recorded_warning(tmp_path: Path) -> None:
    csv = write_oml_csv(tmp_path / "oml", sequences=False)
    text = csv.read_text(encoding="utf-8").replace("\n0,images/0_0.png,train", "\n7,images/0_0.png,train")
    csv.write_text(text, encoding="utf-8")
    data_root = tmp_path / "data"
    result = runner.invoke(app, ["prepare", str(csv), "--data-root", str(data_root)])
    assert result.exit_code == 0, result.output
    assert "classes overlap" in result.output
    assert open_prepared("df", data_root).info["train_test_disjoint"] is False


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("is_gallery,", "gallery,", 1), "no column 'is_gallery'"),
        (lambda t: t.replace(",validation,", ",valid,", 1), "row 38: split 'valid' is not train or validation"),
        (lambda t: t.replace("True,False", "maybe,False", 1), "row 38: is_query is 'maybe'"),
        (lambda t: t.replace("images/7_1.png", "images/gone.png", 1), "row 45 (images/gone.png): file not found"),
        (lambda t: t.replace("\n3,", "\nthree,", 1), "label 'three' is not an integer"),
    ],
)
def test_oml_csv_errors_name_the_row(tmp_path: Path, edit: object, message: str) -> None:
    csv = write_oml_csv(tmp_path / "oml")
    assert callable(edit)
    csv.write_text(edit(csv.read_text(encoding="utf-8")), encoding="utf-8")
    data_root = tmp_path / "data"
    result = runner.invoke(app, ["prepare", str(csv), "--data-root", str(data_root)])
    assert result.exit_code in (2, 3), result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in result.output.replace("\n", " "), result.output
    assert not data_root.exists() or not any(data_root.iterdir())


def test_catalog_schema_checks_backbones_by_registry_and_relaxes_ranges(tmp_path: Path) -> None:
    from dmlbench.datasets.catalog import parse_catalog
    from dmlbench.errors import ConfigError

    table = (
        '[mine]\ntitle = "mine"\nsource = "imagefolder"\nprotocol = "class-split"\nbackbone = "{b}"\n'
        "image_size = 64\nchannels = 3\nrecall_k = [1]\ndefault_batch_classes = 4\ndefault_batch_per_class = 2\n"
        'split_rule = "source"\n'
    )
    catalog = tmp_path / "mine.toml"
    for backbone in ("resnet50", "timm:vit_small_patch16_224.dino", "small_cnn"):
        catalog.write_text(table.format(b=backbone), encoding="utf-8")
        assert parse_catalog(catalog)["mine"].backbone == backbone  # no class ranges needed with split_rule source
    catalog.write_text(table.format(b="resnet5O"), encoding="utf-8")
    with pytest.raises(ConfigError, match="field 'backbone': .*unknown backbone 'resnet5O'; did you mean 'resnet50'"):
        parse_catalog(catalog)
    catalog.write_text(table.format(b="small_cnn").replace('split_rule = "source"\n', ""), encoding="utf-8")
    with pytest.raises(ConfigError, match="needs train_classes and test_classes"):
        parse_catalog(catalog)
    # the params `prepare PATH` records are bounded where the catalog loads, like every source's
    for params, needle in (
        ("split_seed = -1", "params.split_seed must be an integer"),
        ("test_classes = 1.5", "not a share in"),
        ('split = "random"', "params.split 'random' is unknown"),
        ("tset_classes = 0.5", "params.tset_classes: source 'imagefolder' has no such param"),
    ):
        catalog.write_text(table.format(b="small_cnn") + f"[mine.params]\n{params}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match=needle):
            parse_catalog(catalog)


def test_batch_classes_leave_room_for_validation_classes(tmp_path: Path) -> None:
    from dmlbench.config import TrainConfig
    from dmlbench.resolve import resolve_config

    prepare_path(write_folder(tmp_path / "pngs"), Places.of(tmp_path / "data"))
    spec = get_spec("pngs", Places.of(tmp_path / "data"))
    assert spec.default_batch_classes == 6  # all 6 training classes
    plain = resolve_config(TrainConfig(dataset="pngs"), spec)
    assert plain.sampler.classes_per_batch == 6
    held_out = resolve_config(TrainConfig.model_validate({"dataset": "pngs", "validation": {"val_classes": 0.3}}), spec)
    assert held_out.sampler.classes_per_batch == 4  # 2 of the 6 classes validate


def test_a_changed_original_folder_is_reported_by_prepare_and_the_list(tmp_path: Path) -> None:
    import os

    from dmlbench.datasets import list_status
    from dmlbench.events import Event

    folder = write_folder(tmp_path / "pngs")
    places = Places.of(tmp_path / "data")
    prepared = prepare_path(folder, places)
    assert prepared.info["source_info"]["origin_state"]["files"] == 72

    def warnings() -> list[str]:
        events: list[Event] = []
        prepare_path(folder, places, on_event=events.append)
        return [e.message for e in events if e.message.startswith("warning:")]

    def stale() -> str | None:
        return {row.name: row for row in list_status(places)}["pngs"].stale

    assert warnings() == [] and stale() is None
    some_class = next(p for p in folder.iterdir() if p.is_dir())
    extra = some_class / "extra.png"
    extra.write_bytes(next(some_class.glob("*.png")).read_bytes())
    assert any("72 -> 73 files" in w and "--force" in w for w in warnings())
    assert "changed since it was prepared" in (stale() or "")
    extra.unlink()
    assert warnings() == []
    touched = next(some_class.glob("*.png"))
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    assert any("files modified" in w for w in warnings())
    # the CLI shows it too, and the list marks the dataset
    listed = runner.invoke(app, ["prepare", "--list", "--data-root", str(tmp_path / "data")])
    assert listed.exit_code == 0 and "yes (stale)" in listed.stdout and "changed since it was prepared" in listed.stderr
