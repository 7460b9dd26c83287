"""`dmlbench.utils.npy`: a `.npy` header is checked against the bytes before anything is allocated."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dmlbench.errors import MissingInputError
from dmlbench.utils.npy import load_npy, load_npz


def forged_npy(shape: tuple[int, ...], *, descr: str = "<f4", body: bytes = b"\0" * 64, version: int = 1) -> bytes:
    """A well-formed header declaring `shape`, followed by only `body`."""
    buffer = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    writer = np.lib.format.write_array_header_1_0 if version == 1 else np.lib.format.write_array_header_2_0
    writer(buffer, header)
    return buffer.getvalue() + body


def test_real_arrays_round_trip(tmp_path: Path) -> None:
    for index, array in enumerate(
        [np.arange(12, dtype=np.float32).reshape(3, 4), np.zeros((0, 8), np.float16), np.array(3.5), np.arange(5)]
    ):
        path = tmp_path / f"a{index}.npy"
        np.save(path, array)
        assert np.array_equal(load_npy(path), array) and load_npy(path).dtype == array.dtype
        assert np.array_equal(load_npy(path, mmap_mode="r"), array)
    np.savez_compressed(tmp_path / "b.npz", embeddings=np.ones((4, 2)), labels=np.arange(4))
    loaded = load_npz(tmp_path / "b.npz")
    assert sorted(loaded) == ["embeddings", "labels"] and loaded["labels"].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (forged_npy((10**12, 512)), "declares a 1000000000000x512 float32 array (2,048,000,000,000,000 bytes)"),
        (forged_npy((2**40, 2**40, 2**40)), "declares"),  # far beyond int64: no overflow, still refused
        (forged_npy((1000, 16), version=2), "but the file holds 64 bytes"),
        (forged_npy((1000, 16))[:-60], "holds 4 bytes"),  # a real array cut short
        (forged_npy((3,), descr="|O"), "Python objects"),
        (b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4',", "cannot read"),
        (b"not an array at all", "cannot read"),
        (b"", "cannot read"),
    ],
    ids=["huge shape", "overflowing shape", "v2 header", "truncated", "object", "torn header", "no magic", "empty"],
)
def test_forged_or_broken_npy_is_refused_before_allocating(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "x.npy"
    path.write_bytes(content)
    for mmap_mode in (None, "r"):
        with pytest.raises(MissingInputError, match="cannot read") as info:
            load_npy(path, mmap_mode=mmap_mode)  # type: ignore[arg-type]
        assert str(path) in info.value.message and message in info.value.message, info.value.message
        assert info.value.hint


def test_forged_npz_member_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("labels.npy", forged_npy((10**9,), descr="<i8"))
    with pytest.raises(MissingInputError, match=r"member labels\.npy.*declares a 1000000000 int64"):
        load_npz(path)


def test_a_caller_names_its_own_fix(tmp_path: Path) -> None:
    path = tmp_path / "images.npy"
    path.write_bytes(forged_npy((10**6, 28, 28), descr="|u1"))
    with pytest.raises(MissingInputError) as info:
        load_npy(path, mmap_mode="r", hint="rerun `dmlbench prepare digits --force`")
    assert info.value.hint == "rerun `dmlbench prepare digits --force`"
