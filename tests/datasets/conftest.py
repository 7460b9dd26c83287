"""Fixtures for the datasets tests: a real local HTTP server, archives built once per session, a CLI runner."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from dataset_builders import (
    Built,
    FileServer,
    build_car_ims_tgz,
    build_cars_annos_mat,
    build_cars_kaggle,
    build_cub_tgz,
    cars_rows,
    cub_rows,
    start_server,
)
from typer.testing import CliRunner


@pytest.fixture
def server() -> Iterator[FileServer]:
    state, httpd = start_server()
    yield state
    httpd.shutdown()
    httpd.server_close()


def _scratch(prefix: str) -> Path | None:
    """A folder in RAM when the machine has /dev/shm: these tests create ~100k small files, and on a busy
    disk file creation alone would take minutes. The code under test is the same either way."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return Path(tempfile.mkdtemp(prefix=prefix, dir=shm))
    return None


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    scratch = _scratch("dmlbench-dataset-files-")
    yield scratch or tmp_path_factory.mktemp("dataset-files")
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="session")
def cub_full(session_dir: Path) -> Built:
    """All 11,788 CUB images (tiny JPEGs) + the five real metadata files."""
    return build_cub_tgz(session_dir / "CUB_200_2011.tgz")


@pytest.fixture(scope="session")
def cub_mini_rows() -> list[int]:
    """Classes 1, 2 (train) and 101, 102 (test) of the real metadata: a few hundred rows."""
    return cub_rows([1, 2, 101, 102])


@pytest.fixture(scope="session")
def cub_mini(session_dir: Path, cub_mini_rows: list[int]) -> Built:
    (session_dir / "mini").mkdir()
    return build_cub_tgz(session_dir / "mini" / "CUB_200_2011.tgz", rows=cub_mini_rows)


@pytest.fixture(scope="session")
def cars_dir(session_dir: Path) -> tuple[Path, Built, Built]:
    """car_ims.tgz (16,185 tiny JPEGs) + cars_annos.mat REBUILT with scipy from the real cars_annos.csv."""
    folder = session_dir / "cars"
    folder.mkdir()
    rows = cars_rows()
    mat = build_cars_annos_mat(folder / "cars_annos.mat", rows)
    tgz = build_car_ims_tgz(folder / "car_ims.tgz", rows)
    return folder, tgz, mat


@pytest.fixture(scope="session")
def cars_kaggle(session_dir: Path) -> Path:
    return build_cars_kaggle(session_dir / "kaggle")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def data_root(tmp_path: Path) -> Iterator[Path]:
    scratch = _scratch("dmlbench-data-root-")
    yield (scratch or tmp_path) / "data"
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)
