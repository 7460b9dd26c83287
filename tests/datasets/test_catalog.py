"""The catalog: every entry validates, every source resolves, typos fail loudly with file/table/field."""

from __future__ import annotations

from pathlib import Path

import pytest
from dataset_builders import spec_override, write_catalog
from typer.testing import CliRunner

from dmlbench.cli import app
from dmlbench.datasets import catalog_specs, get_spec, load_catalog
from dmlbench.datasets.sources import SOURCES
from dmlbench.datasets.sources.base import Source
from dmlbench.errors import ConfigError, UnknownNameError

EXPECTED = {"glyphs", "digits", "fashion-mnist", "synthetic", "cub200", "cars196", "sop", "inshop"}


def test_every_entry_validates_and_its_source_resolves() -> None:
    specs = load_catalog()
    assert set(specs) == EXPECTED
    for name, spec in specs.items():
        assert spec.name == name
        assert issubclass(SOURCES.get(spec.source), Source)
        assert spec.default_batch_classes >= 2 and spec.default_batch_per_class >= 2
        if spec.protocol == "class-split":
            assert spec.expect_classes["train"] >= spec.default_batch_classes


@pytest.mark.parametrize(
    ("name", "backbone", "size", "channels", "recall_k", "protocol"),
    [
        ("digits", "small_cnn", 8, 1, (1, 2, 4, 8), "class-split"),
        ("fashion-mnist", "small_cnn", 28, 1, (1, 2, 4, 8), "class-split"),
        ("synthetic", "small_cnn", 32, 3, (1, 2, 4, 8), "class-split"),
        ("cub200", "googlenet", 224, 3, (1, 2, 4, 8), "class-split"),
        ("cars196", "googlenet", 224, 3, (1, 2, 4, 8), "class-split"),
        ("sop", "googlenet", 224, 3, (1, 10, 100, 1000), "given-split"),
        ("inshop", "googlenet", 224, 3, (1, 10, 20, 30, 40, 50), "query-gallery"),
    ],
)
def test_spec_fields_other_packages_use(
    name: str, backbone: str, size: int, channels: int, recall_k: tuple[int, ...], protocol: str
) -> None:
    spec = get_spec(name)
    assert (spec.backbone, spec.image_size, spec.channels, spec.recall_k, spec.protocol) == (
        backbone,
        size,
        channels,
        recall_k,
        protocol,
    )


def test_split_facts_match_the_documented_protocols() -> None:
    cub, cars = get_spec("cub200"), get_spec("cars196")
    assert (cub.train_classes, cub.test_classes) == ((1, 100), (101, 200))
    assert cub.expect_images == {"train": 5864, "test": 5924}
    assert (cars.train_classes, cars.test_classes) == ((1, 98), (99, 196))
    assert cars.expect_images == {"train": 8054, "test": 8131}
    assert get_spec("sop").expect_images == {"train": 59551, "test": 60502}
    assert cub.files[0].md5 == "97eceeb196236b17998738112f37df78" and cub.files[0].size == 1150585339
    assert get_spec("digits").default_batch_classes == 5


def test_unknown_name_suggests_the_close_one() -> None:
    with pytest.raises(UnknownNameError) as info:
        get_spec("cub-200")
    assert "did you mean 'cub200'" in (info.value.hint or "")


def _bad_catalog(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "mine.toml"
    path.write_text(body)
    return path


BASE = """
[mine]
title = "mine"
source = "cub200"
protocol = "class-split"
backbone = "googlenet"
image_size = 224
channels = 3
recall_k = [1, 2]
train_classes = [1, 2]
test_classes = [3, 4]
default_batch_classes = 2
default_batch_per_class = 2
"""


@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        ("colour = 'red'\n", "colour", "unknown key"),
        ("\n[[mine.files]]\nname = 'a.tgz'\nformat = 'tgz'\nmd5 = 'xyz'\n", "files.0.md5", "pattern"),
        ("\n[[mine.files]]\nname = 'a.tgz'\nformat = 'rar'\n", "files.0.format", "'tgz'"),
    ],
)
def test_catalog_errors_name_file_table_and_field(tmp_path: Path, extra: str, field: str, message: str) -> None:
    path = _bad_catalog(tmp_path, BASE + extra)
    with pytest.raises(ConfigError) as info:
        catalog_specs([path])
    text = info.value.message
    assert str(path) in text and "[mine]" in text and repr(field) in text and message in text


def test_unknown_source_suggests(tmp_path: Path) -> None:
    path = _bad_catalog(tmp_path, BASE.replace('source = "cub200"', 'source = "cub20"'))
    with pytest.raises(ConfigError) as info:
        catalog_specs([path])
    assert "'source'" in info.value.message and "did you mean 'cub200'" in info.value.message


def test_overlapping_class_ranges_are_rejected(tmp_path: Path) -> None:
    path = _bad_catalog(tmp_path, BASE.replace("test_classes = [3, 4]", "test_classes = [2, 4]"))
    with pytest.raises(ConfigError, match="overlap"):
        catalog_specs([path])


def test_user_catalog_cannot_silently_override(tmp_path: Path) -> None:
    path = write_catalog(tmp_path / "clash.toml", spec_override("cub200"))
    with pytest.raises(ConfigError, match="already defined"):
        catalog_specs([path])


def test_user_catalog_round_trips(tmp_path: Path) -> None:
    spec = spec_override("cub200", name="cub-copy", title="copy")
    path = write_catalog(tmp_path / "copy.toml", spec)
    assert catalog_specs([path])["cub-copy"] == spec


def test_cli_unknown_dataset(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["prepare", "cub", "--data-root", str(tmp_path)])
    assert result.exit_code == 2
    assert "error: unknown dataset 'cub'" in result.stderr
    assert "did you mean 'cub200'" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "cub").exists()


def test_cli_list_shows_every_dataset(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["prepare", "--list", "--data-root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for name in EXPECTED:
        assert name in result.stdout


@pytest.mark.parametrize("kind", ["folder", "binary"])
def test_cli_unreadable_catalog_is_a_config_error(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "catalog.toml"
    if kind == "folder":
        path.mkdir()
    else:
        path.write_bytes(b"\xff\xfe\x00garbage")
    result = CliRunner().invoke(app, ["prepare", "--list", "--catalog", str(path), "--data-root", str(tmp_path)])
    assert result.exit_code == ConfigError.exit_code, result.output
    assert "cannot read catalog file" in result.stderr
    assert "hint:" in result.stderr
    assert "Traceback" not in result.output


def test_a_dataset_prepared_from_an_extra_catalog_needs_the_catalog_no_more(tmp_path: Path) -> None:
    from dmlbench.datasets import prepare
    from dmlbench.paths import Places

    spec = spec_override("digits", name="my-digits", title="my copy of digits")
    path = write_catalog(tmp_path / "mine.toml", spec)
    data = tmp_path / "data"
    with pytest.raises(UnknownNameError):
        get_spec("my-digits", Places.of(data))  # before it is prepared, only its catalog knows it
    prepare("my-digits", Places.of(data, catalogs=[path]))
    path.unlink()  # the catalog file is gone: the prepared folder's record is enough
    assert get_spec("my-digits", Places.of(data)) == spec
    args = ["train", "--dataset", "my-digits", "--steps", "1", "--no-eval", "--device", "cpu"]
    result = CliRunner().invoke(app, [*args, "--data-root", str(data), "--runs-root", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.stderr
    listed = CliRunner().invoke(app, ["prepare", "--list", "--data-root", str(data)])
    assert "my-digits" in listed.stdout
    # A folder of images under the same name is refused: the name is taken by a catalog dataset's record.
    from user_images import write_folder

    pngs = write_folder(tmp_path / "pngs")
    clash = CliRunner().invoke(app, ["prepare", str(pngs), "--name", "my-digits", "--data-root", str(data)])
    assert clash.exit_code == 2
    assert "already prepared from the 'digits' source of a catalog" in clash.stderr
    assert get_spec("my-digits", Places.of(data)) == spec  # untouched
