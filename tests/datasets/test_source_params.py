"""Each dataset source bounds its own `params` where the catalog loads (and again before a build):
a zero size or a huge count is a one-line config error, never a traceback in `prepare` or `train`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dmlbench.datasets import get_spec, prepare
from dmlbench.datasets.catalog import parse_catalog
from dmlbench.datasets.sources import SOURCES
from dmlbench.datasets.spec import DatasetSpec
from dmlbench.errors import ConfigError
from dmlbench.paths import Places


def _with_params(name: str, **params: Any) -> DatasetSpec:
    table = get_spec(name).model_dump()
    table["params"] = {**table["params"], **params}
    return DatasetSpec(**table)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("synthetic", {"size": 0}, "params.size must be an integer in 8.."),
        ("synthetic", {"num_classes": -3}, "params.num_classes"),
        ("synthetic", {"images_per_class": 10**12}, "params.images_per_class"),
        ("synthetic", {"seed": 2**40}, "params.seed"),
        ("synthetic", {"size": 4096, "num_classes": 20_000, "images_per_class": 1_000}, "GiB"),
        ("synthetic", {"size": "32"}, "params.size"),
        ("synthetic", {"colour": 1}, "params.colour"),
        ("glyphs", {"size": 0}, "params.size"),
        ("glyphs", {"images_per_class": 1}, "params.images_per_class"),
        ("glyphs", {"homoglyph_threshold": 5.0}, "homoglyph_threshold"),
        ("glyphs", {"homoglyph_threshold": float("nan")}, "homoglyph_threshold"),
        ("glyphs", {"font_dir": 3}, "font_dir"),
    ],
)
def test_bad_params_are_refused_by_their_source(name: str, params: dict[str, Any], message: str) -> None:
    spec = _with_params(name, **params)
    with pytest.raises(ConfigError, match=message):
        SOURCES.get(spec.source).check_params(spec)


def test_the_packaged_params_pass() -> None:
    for name in ("synthetic", "glyphs", "digits", "cub200"):
        spec = get_spec(name)
        SOURCES.get(spec.source).check_params(spec)


def test_prepare_of_a_python_spec_checks_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="params.size"):
        prepare("synthetic", Places.of(tmp_path), spec=_with_params("synthetic", size=0))
    assert not any(tmp_path.iterdir())


CATALOG = """[mine]
title = "mine"
source = "synthetic"
protocol = "class-split"
backbone = "small_cnn"
image_size = 32
channels = 3
recall_k = [1]
train_classes = [0, 9]
test_classes = [10, 19]
default_batch_classes = 4
default_batch_per_class = 4
params = { num_classes = 20, images_per_class = 5, size = SIZE, seed = 0 }
"""


def test_catalog_load_refuses_params_and_negative_counts(tmp_path: Path) -> None:
    path = tmp_path / "cat.toml"
    path.write_text(CATALOG.replace("SIZE", "16"), encoding="utf-8")
    assert list(parse_catalog(path)) == ["mine"]
    path.write_text(CATALOG.replace("SIZE", "16") + "expect_images = { train = -1 }\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="expect_images"):
        parse_catalog(path)
    path.write_text(CATALOG.replace("SIZE", "0"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"cat.toml: \[mine\] params.size"):
        parse_catalog(path)
