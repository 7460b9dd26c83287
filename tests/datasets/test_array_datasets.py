"""digits, synthetic and fashion-mnist: exact splits, the prepared contract, instant reruns, --from checks."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest
from dataset_builders import FileServer, assert_nothing_left, build_fashion_files, spec_override
from typer.testing import CliRunner

from dmlbench.cli import app
from dmlbench.datasets import list_status, load_index, open_prepared, prepare
from dmlbench.errors import ChecksumError, MissingInputError, UsageError
from dmlbench.paths import Places

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def _splits(frame) -> dict[str, tuple[int, int]]:  # type: ignore[no-untyped-def]
    return {s: (len(g), g["label"].nunique()) for s, g in frame.groupby("split")}


def test_digits_split_and_contract(data_root: Path) -> None:
    prepared = prepare("digits", Places.of(data_root))
    frame = load_index("digits", data_root)
    assert _splits(frame) == {"train": (901, 5), "test": (896, 5)}
    assert set(frame.loc[frame.split == "train", "label"]) == {0, 1, 2, 3, 4}
    assert set(frame.loc[frame.split == "test", "label"]) == {5, 6, 7, 8, 9}
    assert list(frame.columns) == ["path", "label", "split"]
    assert frame["path"].iloc[7] == "images.npy#7"
    images = np.load(data_root / "digits" / "images.npy")
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8 and images.max() == 255
    info = json.loads((data_root / "digits" / "prepared.json").read_text())
    assert list(info)[0] == "schema_version"
    for key in ("name", "title", "protocol", "spec_sha256", "index_sha256", "dmlbench_version", "created"):
        assert info[key]
    assert info["image_size"] == [8, 8] and info["channels"] == 1 and info["recall_k"] == [1, 2, 4, 8]
    assert info["splits"]["train"] == {"images": 901, "classes": 5, "label_min": 0, "label_max": 4}
    assert info["train_test_disjoint"] is True
    assert prepared.fingerprint == info["index_sha256"]


def test_rerun_is_instant_and_changes_nothing(data_root: Path) -> None:
    prepare("digits", Places.of(data_root))
    info = data_root / "digits" / "prepared.json"
    before = (info.stat().st_mtime_ns, (data_root / "digits" / "index.csv").stat().st_mtime_ns)
    start = time.perf_counter()
    prepare("digits", Places.of(data_root))
    assert time.perf_counter() - start < 0.5
    assert (info.stat().st_mtime_ns, (data_root / "digits" / "index.csv").stat().st_mtime_ns) == before
    prepare("digits", Places.of(data_root), force=True)
    assert info.stat().st_mtime_ns != before[0]


def test_synthetic_is_deterministic(tmp_path: Path) -> None:
    a = prepare("synthetic", Places.of(tmp_path / "a"))
    b = prepare("synthetic", Places.of(tmp_path / "b"))
    assert _splits(a.index) == {"train": (300, 10), "test": (300, 10)}
    assert a.fingerprint == b.fingerprint
    assert np.array_equal(np.load(a.root / "images.npy"), np.load(b.root / "images.npy"))
    assert np.load(a.root / "images.npy").shape == (600, 32, 32, 3)


def test_open_prepared_missing_names_the_command(data_root: Path) -> None:
    with pytest.raises(MissingInputError) as info:
        open_prepared("cub200", data_root)
    assert info.value.exit_code == 3
    assert "dmlbench prepare cub200" in (info.value.hint or "")


def test_from_is_refused_for_generated_datasets(data_root: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--from is not used"):
        prepare("digits", Places.of(data_root), source=tmp_path)


def test_list_status(data_root: Path) -> None:
    prepare("digits", Places.of(data_root))
    rows = {row.name: row for row in list_status(Places.of(data_root))}
    assert rows["digits"].prepared and rows["digits"].splits["test"]["images"] == 896
    assert not rows["cub200"].prepared


def test_cli_prepare_digits_prints_the_summary(data_root: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["prepare", "digits", "--data-root", str(data_root)])
    assert result.exit_code == 0, result.output
    assert "901" in result.stdout and "896" in result.stdout and "train" in result.stdout
    again = runner.invoke(app, ["prepare", "digits", "--data-root", str(data_root)])
    assert again.exit_code == 0 and "already prepared" in again.stderr


@pytest.mark.skipif(
    not DEBIAN_FASHION.is_dir(),
    reason=f"{DEBIAN_FASHION} missing: install the Debian package dataset-fashion-mnist (apt-get install "
    "dataset-fashion-mnist) to run the real-data test",
)
def test_fashion_mnist_from_debian_copy(data_root: Path) -> None:
    result = CliRunner().invoke(
        app, ["prepare", "fashion-mnist", "--from", str(DEBIAN_FASHION), "--data-root", str(data_root)]
    )
    assert result.exit_code == 0, result.output
    frame = load_index("fashion-mnist", data_root)
    assert _splits(frame) == {"train": (35000, 5), "test": (35000, 5)}
    images = np.load(data_root / "fashion-mnist" / "images.npy", mmap_mode="r")
    assert images.shape == (70000, 28, 28)
    assert "35,000" in result.stdout


def test_fashion_mnist_download_from_local_server(server: FileServer, data_root: Path, tmp_path: Path) -> None:
    files = build_fashion_files(tmp_path / "fm")
    base = spec_override("fashion-mnist")
    specs = []
    for spec_file in base.files:
        built, content = files[spec_file.name]
        url = server.serve(f"/fm/{spec_file.name}", built.path.read_bytes())
        specs.append(
            spec_file.model_copy(
                update={
                    "urls": (url,),
                    "md5": built.md5,
                    "content_size": len(content),
                    "content_sha256": hashlib.sha256(content).hexdigest(),
                }
            )
        )
    spec = spec_override("fashion-mnist", files=tuple(specs), expect_images={}, expect_classes={})
    prepared = prepare("fashion-mnist", Places.of(data_root), spec=spec)
    assert _splits(prepared.index) == {"train": (40, 5), "test": (40, 5)}
    assert sorted(p.name for p in (data_root / "fashion-mnist" / "raw").iterdir()) == sorted(files)


def test_fashion_mnist_from_wrong_files(data_root: Path, tmp_path: Path) -> None:
    files = build_fashion_files(tmp_path / "fm")  # right names, wrong content
    with pytest.raises(ChecksumError, match="content sha256 mismatch|decompresses to"):
        prepare("fashion-mnist", Places.of(data_root), source=tmp_path / "fm")
    assert_nothing_left(data_root, "fashion-mnist")
    assert files


def test_fashion_mnist_from_a_folder_of_other_files(data_root: Path, tmp_path: Path) -> None:
    (tmp_path / "cub").mkdir()
    (tmp_path / "cub" / "images.txt").write_text("1 001.X/a.jpg\n")
    result = CliRunner().invoke(
        app, ["prepare", "fashion-mnist", "--from", str(tmp_path / "cub"), "--data-root", str(data_root)]
    )
    assert result.exit_code == 2
    assert "does not hold Fashion-MNIST files" in result.stderr and "hint:" in result.stderr
    assert_nothing_left(data_root, "fashion-mnist")
