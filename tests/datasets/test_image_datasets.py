"""CUB-200-2011, Cars196 and SOP from archives in their real formats (real metadata, tiny images)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from dataset_builders import (
    Built,
    FileServer,
    build_sop_zip,
    sop_layout,
    spec_override,
    write_catalog,
)
from typer.testing import CliRunner

from dmlbench.cli import app
from dmlbench.datasets import load_index, prepare
from dmlbench.paths import Places


def _counts(frame) -> dict[str, tuple[int, int]]:  # type: ignore[no-untyped-def]
    return {s: (len(g), g["label"].nunique()) for s, g in frame.groupby("split")}


def _assert_disjoint(frame) -> None:  # type: ignore[no-untyped-def]
    train = set(frame.loc[frame.split == "train", "label"])
    other = set(frame.loc[frame.split != "train", "label"])
    assert train and other and not train & other


def test_cub200_download_cli_exact_split(server: FileServer, cub_full: Built, data_root: Path, tmp_path: Path) -> None:
    url = server.serve("/CUB_200_2011.tgz", cub_full.path.read_bytes())
    spec = spec_override("cub200", name="cub-local", files=(cub_full.file_spec("CUB_200_2011.tgz", "tgz", [url]),))
    catalog = write_catalog(tmp_path / "cat.toml", spec)
    runner = CliRunner()
    result = runner.invoke(app, ["prepare", "cub-local", "--catalog", str(catalog), "--data-root", str(data_root)])
    assert result.exit_code == 0, result.output
    assert "5,864" in result.stdout and "5,924" in result.stdout
    frame = load_index("cub-local", data_root)
    assert _counts(frame) == {"train": (5864, 100), "test": (5924, 100)}
    _assert_disjoint(frame)
    assert frame["label"].min() == 1 and frame["label"].max() == 200
    assert list(frame.columns) == ["path", "label", "split", "x1", "y1", "x2", "y2"]
    first = frame.iloc[0]
    assert first["path"] == "images/001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg"
    assert (first["x1"], first["y1"], first["x2"], first["y2"]) == (60.0, 27.0, 385.0, 331.0)
    assert (data_root / "cub-local" / first["path"]).is_file()
    assert (data_root / "cub-local" / "raw" / "CUB_200_2011.tgz").is_file()
    server.requests.clear()
    start = time.perf_counter()
    again = runner.invoke(app, ["prepare", "cub-local", "--catalog", str(catalog), "--data-root", str(data_root)])
    assert again.exit_code == 0 and time.perf_counter() - start < 1.0 and server.requests == []


def test_cub200_from_archive_and_from_extracted_folder(cub_full: Built, data_root: Path) -> None:
    spec = spec_override("cub200", files=(cub_full.file_spec("CUB_200_2011.tgz", "tgz"),))
    prepared = prepare("cub200", Places.of(data_root), source=cub_full.path, spec=spec)
    assert _counts(prepared.index) == {"train": (5864, 100), "test": (5924, 100)}
    # the extracted folder, as a user who unpacked the archive has it
    import tarfile

    with tarfile.open(cub_full.path) as tar:
        # The archive is the test's own; `filter` exists only from Python 3.11.4 (and 3.10.12) on.
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(data_root.parent / "unpacked", **safe)  # type: ignore[arg-type]
    other = data_root.parent / "other-root"
    prepared2 = prepare("cub200", Places.of(other), source=data_root.parent / "unpacked", spec=spec)
    assert prepared2.fingerprint == prepared.fingerprint


def test_cars196_download_tgz_and_rebuilt_mat(
    cars_dir: tuple[Path, Built, Built], server: FileServer, data_root: Path
) -> None:
    """cars_annos.mat here is REBUILT with scipy.io.savemat from the real cars_annos.csv (no original available)."""
    folder, tgz, mat = cars_dir
    result = CliRunner().invoke(app, ["prepare", "cars196", "--from", str(folder), "--data-root", str(data_root)])
    # the shipped catalog has the original md5s, which our rebuilt files cannot match
    assert result.exit_code == 4 and "md5 mismatch" in result.stderr
    tgz_url = server.serve("/cars/car_ims.tgz", tgz.path.read_bytes())
    mat_url = server.serve("/cars/cars_annos.mat", mat.path.read_bytes())
    spec = spec_override(
        "cars196",
        files=(tgz.file_spec("car_ims.tgz", "tgz", [tgz_url]), mat.file_spec("cars_annos.mat", "mat", [mat_url])),
    )
    prepared = prepare("cars196", Places.of(data_root), spec=spec)
    assert sorted(p.name for p in (data_root / "cars196" / "raw").iterdir()) == ["car_ims.tgz", "cars_annos.mat"]
    frame = prepared.index
    assert _counts(frame) == {"train": (8054, 98), "test": (8131, 98)}
    _assert_disjoint(frame)
    assert frame.loc[frame.split == "train", "label"].max() == 98
    assert frame.loc[frame.split == "test", "label"].min() == 99
    row = frame.iloc[0]
    assert row["path"] == "images/000001.jpg" and (row["x1"], row["y1"], row["x2"], row["y2"]) == (112, 7, 853, 717)


def test_cars196_from_kaggle_folder(cars_kaggle: Path, data_root: Path) -> None:
    prepared = prepare("cars196", Places.of(data_root), source=cars_kaggle)
    frame = prepared.index
    assert _counts(frame) == {"train": (8054, 98), "test": (8131, 98)}
    _assert_disjoint(frame)
    assert {"images/train/00001.jpg", "images/test/00001.jpg"} <= set(frame["path"])


def test_sop_zip_given_split(server: FileServer, data_root: Path, tmp_path: Path) -> None:
    rows = sop_layout(train_classes=40, test_classes=30)
    built = build_sop_zip(tmp_path / "Stanford_Online_Products.zip", rows)
    url = server.serve("/sop.zip", built.built.path.read_bytes())
    spec = spec_override(
        "sop",
        files=(built.built.file_spec("Stanford_Online_Products.zip", "zip", [url]),),
        expect_images={"train": built.train_images, "test": built.test_images},
        expect_classes={"train": 40, "test": 30},
    )
    prepared = prepare("sop", Places.of(data_root), spec=spec)
    assert _counts(prepared.index) == {"train": (built.train_images, 40), "test": (built.test_images, 30)}
    _assert_disjoint(prepared.index)
    assert prepared.index["path"].iloc[0] == f"images/{rows[0][3]}"
    assert prepared.info["protocol"] == "given-split"


def test_inshop_query_gallery(data_root: Path, tmp_path: Path) -> None:
    from dataset_builders import jpeg_bytes

    folder = tmp_path / "inshop"
    lines = []
    for item, split in ((2, "train"), (3, "train"), (7, "query"), (7, "gallery"), (8, "query"), (8, "gallery")):
        rel = f"img/WOMEN/Dresses/id_{item:08d}/0{len(lines)}_1_front.jpg"
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(jpeg_bytes())
        lines.append(f"{rel} id_{item:08d} {split}")
    (folder / "Eval").mkdir()
    (folder / "Eval" / "list_eval_partition.txt").write_text(
        f"{len(lines)}\nimage_name item_id evaluation_status\n" + "\n".join(lines) + "\n"
    )
    prepared = prepare("inshop", Places.of(data_root), source=folder)
    assert _counts(prepared.index) == {"train": (2, 2), "query": (2, 2), "gallery": (2, 2)}
    assert prepared.info["protocol"] == "query-gallery" and prepared.info["train_test_disjoint"] is True


@pytest.mark.parametrize("name", ["cars196", "inshop"])
def test_download_without_url_points_to_from(name: str, data_root: Path) -> None:
    result = CliRunner().invoke(app, ["prepare", name, "--data-root", str(data_root)])
    assert result.exit_code == 3
    assert "cannot be downloaded automatically" in result.stderr and "--from" in result.stderr
    assert not (data_root / name / "prepared.json").exists()
