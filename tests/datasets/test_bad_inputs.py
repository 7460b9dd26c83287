"""Every bad input of issue 2: one-line error + hint, the right exit code, nothing half-written, rerun works."""

from __future__ import annotations

import errno
import io
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dataset_builders import (
    REAL,
    Built,
    FileServer,
    assert_nothing_left,
    build_cub_tgz,
    build_fashion_files,
    build_sop_zip,
    closed_port,
    sop_layout,
    spec_override,
    write_catalog,
)
from typer.testing import CliRunner, Result

from dmlbench.cli import app
from dmlbench.cli._output import ProgressRenderer
from dmlbench.datasets import download, extract, load_index
from dmlbench.datasets.spec import DatasetSpec, FileSpec
from dmlbench.events import Event

NAME = "cub-mini"


def _mini_spec(built: Built | None, urls: list[str] = (), **file_updates: object) -> DatasetSpec:  # type: ignore[assignment]
    files: tuple[FileSpec, ...] = ()
    if built is not None:
        file_spec = built.file_spec("CUB_200_2011.tgz", "tgz", urls)
        files = (file_spec.model_copy(update=file_updates),)
    return spec_override(
        "cub200",
        name=NAME,
        title="CUB-200-2011 mini (4 classes)",
        files=files,
        expect_images={},
        expect_classes={"train": 2, "test": 2},
    )


def _run(tmp_path: Path, data_root: Path, spec: DatasetSpec, *extra: str) -> Result:
    catalog = write_catalog(tmp_path / "catalog.toml", spec)
    args = ["prepare", spec.name, "--catalog", str(catalog), "--data-root", str(data_root), *extra]
    return CliRunner().invoke(app, args)


def _assert_error(result: Result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert any(line.startswith("hint:") for line in lines), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_happy_mini_then_force(cub_mini: Built, server: FileServer, data_root: Path, tmp_path: Path) -> None:
    url = server.serve("/cub.tgz", cub_mini.path.read_bytes())
    result = _run(tmp_path, data_root, _mini_spec(cub_mini, [url]))
    assert result.exit_code == 0, result.output
    frame = load_index(NAME, data_root)
    assert frame.groupby("split")["label"].nunique().to_dict() == {"test": 2, "train": 2}
    forced = _run(tmp_path, data_root, _mini_spec(cub_mini, [url]), "--force")
    assert forced.exit_code == 0, forced.output
    assert sorted(p.name for p in (data_root / NAME).iterdir() if p.name != ".prepare.lock") == [
        "images",
        "index.csv",
        "meta",
        "prepared.json",
        "raw",
    ]


def test_checksum_mismatch(cub_mini: Built, server: FileServer, data_root: Path, tmp_path: Path) -> None:
    url = server.serve("/cub.tgz", cub_mini.path.read_bytes())
    result = _run(tmp_path, data_root, _mini_spec(cub_mini, [url], md5="0" * 32))
    _assert_error(result, 4, "md5 mismatch", "CUB_200_2011.tgz")
    assert_nothing_left(data_root, NAME)
    assert not any((data_root / NAME / "raw").iterdir())  # the wrong file is not kept
    assert _run(tmp_path, data_root, _mini_spec(cub_mini, [url])).exit_code == 0


def test_truncated_archive(cub_mini: Built, data_root: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut" / "CUB_200_2011.tgz"
    cut.parent.mkdir()
    cut.write_bytes(cub_mini.path.read_bytes()[: cub_mini.size // 2])
    spec = _mini_spec(None)
    spec = spec.model_copy(update={"files": (Built.of(cut).file_spec("CUB_200_2011.tgz", "tgz"),)})
    result = _run(tmp_path, data_root, spec, "--from", str(cut))
    _assert_error(result, 4, "truncated or corrupt")
    assert_nothing_left(data_root, NAME)


def test_truncated_download_is_caught_by_size(
    cub_mini: Built, server: FileServer, data_root: Path, tmp_path: Path
) -> None:
    url = server.serve("/cub.tgz", cub_mini.path.read_bytes()[:1000])
    result = _run(tmp_path, data_root, _mini_spec(cub_mini, [url]))
    _assert_error(result, 4, "1,000 bytes", f"expected {cub_mini.size:,}")
    assert_nothing_left(data_root, NAME)


def test_html_page_instead_of_archive(cub_mini: Built, server: FileServer, data_root: Path, tmp_path: Path) -> None:
    page = (REAL / "Cars196" / "broken_download_example" / "cars_annos.mat").read_bytes()  # a real HTML 500 page
    url = server.serve("/cub.tgz", page, content_type="text/html")
    result = _run(tmp_path, data_root, _mini_spec(cub_mini, [url]))
    _assert_error(result, 4, "is an HTML page, not a gzip'd tar archive")
    assert_nothing_left(data_root, NAME)


def test_html_cars_annos_via_from(cars_dir: tuple[Path, Built, Built], data_root: Path, tmp_path: Path) -> None:
    """The real broken download: Stanford's HTML 500 page saved as cars_annos.mat."""
    folder, tgz, _ = cars_dir
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copyfile(tgz.path, mixed / "car_ims.tgz")  # a link leaving the --from folder is refused
    (mixed / "cars_annos.mat").write_bytes((REAL / "Cars196/broken_download_example/cars_annos.mat").read_bytes())
    spec = spec_override(
        "cars196",
        name="cars-mini",
        files=(tgz.file_spec("car_ims.tgz", "tgz"),)
        + (spec_override("cars196").files[1].model_copy(update={"md5": None}),),
    )
    result = _run(tmp_path, data_root, spec, "--from", str(mixed))
    _assert_error(result, 4, "cars_annos.mat", "is an HTML page, not a MATLAB 5.0 .mat file")
    assert_nothing_left(data_root, "cars-mini")


@pytest.mark.parametrize("member", ["CUB_200_2011/../../evil.txt", "/tmp/dmlbench-evil-abs.txt"])
def test_path_traversal_in_tar_is_refused(
    member: str, data_root: Path, tmp_path: Path, cub_mini_rows: list[int]
) -> None:
    archive = tmp_path / "evil" / "CUB_200_2011.tgz"
    archive.parent.mkdir()
    built = build_cub_tgz(archive, rows=cub_mini_rows[:5], extra=[(member, b"pwned")])
    result = _run(tmp_path, data_root, _mini_spec(built), "--from", str(archive))
    _assert_error(result, 4, "refusing archive member", "escapes the destination")
    assert_nothing_left(data_root, NAME)
    assert not list(tmp_path.rglob("evil.txt")) and not Path("/tmp/dmlbench-evil-abs.txt").exists()


def test_path_traversal_in_zip_is_refused(data_root: Path, tmp_path: Path) -> None:
    rows = sop_layout(3, 3)
    built = build_sop_zip(tmp_path / "Stanford_Online_Products.zip", rows, extra=[("../../sop-evil.txt", b"pwned")])
    spec = spec_override(
        "sop",
        name="sop-mini",
        files=(built.built.file_spec("Stanford_Online_Products.zip", "zip"),),
        expect_images={},
        expect_classes={},
    )
    result = _run(tmp_path, data_root, spec, "--from", str(built.built.path))
    _assert_error(result, 4, "refusing archive member '../../sop-evil.txt'")
    assert_nothing_left(data_root, "sop-mini")
    assert not list(tmp_path.parent.rglob("sop-evil.txt"))


def test_symlink_member_is_refused(data_root: Path, tmp_path: Path, cub_mini_rows: list[int]) -> None:
    import io
    import tarfile

    archive = tmp_path / "link" / "CUB_200_2011.tgz"
    archive.parent.mkdir()
    built = build_cub_tgz(archive, rows=cub_mini_rows[:5])
    data = archive.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as src, tarfile.open(archive, "w:gz") as dst:
        for member in src:
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        link = tarfile.TarInfo("CUB_200_2011/images/001.x/passwd.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        dst.addfile(link)
    spec = _mini_spec(Built.of(archive))
    assert built.size != Built.of(archive).size
    result = _run(tmp_path, data_root, spec, "--from", str(archive))
    _assert_error(result, 4, "refusing archive member")
    assert_nothing_left(data_root, NAME)


def test_image_listed_but_missing(data_root: Path, tmp_path: Path, cub_mini_rows: list[int]) -> None:
    archive = tmp_path / "m" / "CUB_200_2011.tgz"
    archive.parent.mkdir()
    built = build_cub_tgz(archive, rows=cub_mini_rows, drop=[cub_mini_rows[3]])
    result = _run(tmp_path, data_root, _mini_spec(built), "--from", str(archive))
    _assert_error(result, 4, "lists 1 image(s) missing from CUB_200_2011.tgz", "Black_Footed_Albatross")
    assert_nothing_left(data_root, NAME)


def test_corrupt_image(data_root: Path, tmp_path: Path, cub_mini_rows: list[int]) -> None:
    archive = tmp_path / "c" / "CUB_200_2011.tgz"
    archive.parent.mkdir()
    built = build_cub_tgz(archive, rows=cub_mini_rows, corrupt=[cub_mini_rows[-1]])
    result = _run(tmp_path, data_root, _mini_spec(built), "--from", str(archive))
    _assert_error(result, 4, "1 corrupt image(s)", "not JPEG/PNG data")
    assert_nothing_left(data_root, NAME)


def test_no_network(cub_mini: Built, data_root: Path, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/CUB_200_2011.tgz"
    result = _run(tmp_path, data_root, _mini_spec(cub_mini, [url]))
    _assert_error(result, 4, "connection refused")
    assert_nothing_left(data_root, NAME)


def test_disk_full_while_extracting(
    cub_mini: Built, data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = extract._write_file
    calls = 0

    def fill_disk(path: str, data: bytes, dir_fd: int | None = None) -> None:
        nonlocal calls
        calls += 1
        if calls > 20:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data, dir_fd)

    monkeypatch.setattr(extract, "_write_file", fill_disk)
    result = _run(tmp_path, data_root, _mini_spec(cub_mini), "--from", str(cub_mini.path))
    _assert_error(result, 4, "disk full while extracting")
    assert_nothing_left(data_root, NAME)
    monkeypatch.setattr(extract, "_write_file", real_write)
    assert _run(tmp_path, data_root, _mini_spec(cub_mini), "--from", str(cub_mini.path)).exit_code == 0


def test_ctrl_c_mid_download_then_resume(
    cub_mini: Built, server: FileServer, data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download, "CHUNK", 4096)
    url = server.serve("/cub.tgz", cub_mini.path.read_bytes())
    original = ProgressRenderer.__call__
    advances = 0

    def press_ctrl_c(self: ProgressRenderer, event: Event) -> None:
        nonlocal advances
        if event.kind == "advance" and event.task.startswith("download"):
            advances += 1
            if advances == 3:
                raise KeyboardInterrupt
        original(self, event)

    monkeypatch.setattr(ProgressRenderer, "__call__", press_ctrl_c)
    result = _run(tmp_path, data_root, _mini_spec(cub_mini, [url]))
    assert result.exit_code == 130 and "interrupted" in result.stderr
    assert_nothing_left(data_root, NAME)
    part = data_root / NAME / "raw" / "CUB_200_2011.tgz.part"
    kept = part.stat().st_size
    assert 0 < kept < cub_mini.size
    monkeypatch.setattr(ProgressRenderer, "__call__", original)
    again = _run(tmp_path, data_root, _mini_spec(cub_mini, [url]))
    assert again.exit_code == 0, again.output
    assert server.requests[-1] == ("/cub.tgz", f"bytes={kept}-")
    assert not part.exists()


def test_from_wrong_dataset_folder(cars_kaggle: Path, data_root: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["prepare", "cub200", "--from", str(cars_kaggle), "--data-root", str(data_root)])
    _assert_error(result, 2, "does not hold CUB-200-2011 birds files", "CUB_200_2011.tgz")
    assert_nothing_left(data_root, "cub200")


def test_from_wrong_dataset_archive(cub_mini: Built, data_root: Path, tmp_path: Path) -> None:
    """cars196 given CUB's archive (no checksums in this catalog entry, so the layout check must catch it)."""
    spec = spec_override(
        "cars196",
        name="cars-nosum",
        files=tuple(f.model_copy(update={"md5": None}) for f in spec_override("cars196").files),
    )
    result = _run(tmp_path, data_root, spec, "--from", str(cub_mini.path))
    _assert_error(result, 2, "is not one of cars-nosum's files")
    assert_nothing_left(data_root, "cars-nosum")
    # and SOP given a zip without the Ebay lists
    bogus = tmp_path / "Stanford_Online_Products.zip"
    with zipfile.ZipFile(bogus, "w") as zf:
        zf.writestr("car_ims/000001.jpg", b"\xff\xd8\xff")
    sop = spec_override(
        "sop", name="sop-nosum", files=(Built.of(bogus).file_spec("Stanford_Online_Products.zip", "zip"),)
    )
    result = _run(tmp_path, data_root, sop, "--from", str(bogus))
    _assert_error(result, 2, "does not hold Stanford Online Products files")
    assert_nothing_left(data_root, "sop-nosum")


def test_from_missing_path(data_root: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["prepare", "cub200", "--from", str(tmp_path / "nope"), "--data-root", str(data_root)]
    )
    _assert_error(result, 3, "does not exist")


def test_failed_force_keeps_the_old_dataset(cub_mini: Built, data_root: Path, tmp_path: Path) -> None:
    assert _run(tmp_path, data_root, _mini_spec(cub_mini), "--from", str(cub_mini.path)).exit_code == 0
    before = (data_root / NAME / "prepared.json").read_bytes()
    cut = tmp_path / "cut" / "CUB_200_2011.tgz"
    cut.parent.mkdir()
    cut.write_bytes(cub_mini.path.read_bytes()[: cub_mini.size // 3])
    spec = _mini_spec(Built.of(cut))
    result = _run(tmp_path, data_root, spec, "--from", str(cut), "--force")
    _assert_error(result, 4, "truncated or corrupt")
    assert (data_root / NAME / "prepared.json").read_bytes() == before
    assert load_index(NAME, data_root)["label"].nunique() == 4
    assert not list((data_root / NAME).glob(".staging-*"))


def test_inshop_item_id_that_is_not_a_number(data_root: Path, tmp_path: Path) -> None:
    from dataset_builders import jpeg_bytes

    folder = tmp_path / "inshop"
    rel = "img/WOMEN/Dresses/id_x/01_1_front.jpg"
    (folder / rel).parent.mkdir(parents=True)
    (folder / rel).write_bytes(jpeg_bytes())
    (folder / "list_eval_partition.txt").write_text(f"1\nimage_name item_id evaluation_status\n{rel} id_x train\n")
    result = CliRunner().invoke(app, ["prepare", "inshop", "--from", str(folder), "--data-root", str(data_root)])
    _assert_error(result, 4, "not id_<number>")
    assert_nothing_left(data_root, "inshop")


def test_copy_tree_reports_every_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    for i in range(5):
        (src / "a" / f"{i}.txt").write_bytes(b"x")
    events: list[Event] = []
    result = extract.copy_tree(src, tmp_path / "dest", lambda name: name, on_event=events.append)
    assert len(result.written) == 5
    assert sum(e.amount for e in events if e.kind == "advance") == 5
    assert [e.kind for e in events][-1] == "finish"


def test_copy_tree_without_hard_links_copies_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    big = bytes(range(256)) * (3 * extract.CHUNK // 256 + 7)  # several chunks and a remainder
    (src / "a" / "big.bin").write_bytes(big)
    (src / "a" / "empty.bin").write_bytes(b"")

    def cross_device(*args: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(extract.os, "link", cross_device)
    result = extract.copy_tree(src, tmp_path / "dest", lambda name: name)
    assert result.written == {"a/big.bin", "a/empty.bin"}
    assert (tmp_path / "dest" / "a" / "big.bin").read_bytes() == big
    assert (tmp_path / "dest" / "a" / "empty.bin").read_bytes() == b""


def test_write_error_while_extracting_is_not_blamed_on_the_archive(
    cub_mini: Built, data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(path: str, data: bytes, dir_fd: int | None = None) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(extract, "_write_file", refuse)
    result = _run(tmp_path, data_root, _mini_spec(cub_mini), "--from", str(cub_mini.path))
    _assert_error(result, 4, "cannot write into", "Permission denied")
    assert "corrupt" not in result.stderr
    assert_nothing_left(data_root, NAME)


# ------------------------------------------------------------------ decompression bombs (issue 24)

BOMB = 48 << 20  # inflates ~1000x from ~48 KiB: over the 32 MiB floor, far under a test machine's memory


def _zeros(size: int) -> Iterator[bytes]:
    chunk = bytes(1 << 20)
    for start in range(0, size, len(chunk)):
        yield chunk[: min(len(chunk), size - start)]


def _add_zip_bomb(archive: Path, name: str, size: int = BOMB) -> None:
    """Append a deflated member of `size` zero bytes, streamed (never whole in memory)."""
    with zipfile.ZipFile(archive, "a", compression=zipfile.ZIP_DEFLATED) as zf, zf.open(name, "w") as member:
        for chunk in _zeros(size):
            member.write(chunk)


def _tgz_with_bomb(archive: Path, cub_rows_: list[int], name: str, size: int = BOMB) -> Built:
    """The mini CUB archive with a member of `size` zeros in front of the rest."""
    import tarfile

    plain = archive.with_suffix(".plain.tgz")
    build_cub_tgz(plain, rows=cub_rows_)

    class Zeros(io.RawIOBase):
        """`size` zero bytes as a stream, a buffer at a time."""

        def __init__(self) -> None:
            self.left = size

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            view = memoryview(buffer).cast("B")
            count = min(len(view), self.left)
            view[:count] = bytes(count)
            self.left -= count
            return count

    with tarfile.open(plain) as src, tarfile.open(archive, "w:gz", compresslevel=9) as dst:
        bomb = tarfile.TarInfo(name)
        bomb.size = size
        dst.addfile(bomb, io.BufferedReader(Zeros()))
        for member in src:
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    plain.unlink()
    return Built.of(archive)


def _sop_spec(built: Built) -> DatasetSpec:
    return spec_override(
        "sop",
        name="sop-mini",
        files=(built.file_spec("Stanford_Online_Products.zip", "zip"),),
        expect_images={},
        expect_classes={},
    )


@pytest.mark.parametrize(
    "member",
    ["Stanford_Online_Products/bicycle_final/111_bomb.JPG", "Stanford_Online_Products/Ebay_info.txt"],
    ids=["image", "metadata"],
)
def test_zip_bomb_member_is_refused_from_its_header(member: str, data_root: Path, tmp_path: Path) -> None:
    rows = sop_layout(3, 3)
    archive = tmp_path / "Stanford_Online_Products.zip"
    build_sop_zip(archive, rows)
    with zipfile.ZipFile(archive) as zf:  # the bomb takes the place of a real member
        kept = [(info, zf.read(info)) for info in zf.infolist() if info.filename != member]
    with zipfile.ZipFile(archive, "w") as zf:
        for info, data in kept:
            zf.writestr(info, data)
    _add_zip_bomb(archive, member)
    assert archive.stat().st_size < BOMB // 500  # the bomb really is one
    result = _run(tmp_path, data_root, _sop_spec(Built.of(archive)), "--from", str(archive))
    _assert_error(result, 4, "refusing archive member", "bytes to 50,331,648 (more than 100x)", "decompression bomb")
    assert_nothing_left(data_root, "sop-mini")


def test_zip_bomb_outside_the_listed_members_is_never_read(data_root: Path, tmp_path: Path) -> None:
    rows = sop_layout(3, 3)
    archive = tmp_path / "Stanford_Online_Products.zip"
    built = build_sop_zip(archive, rows)
    _add_zip_bomb(archive, "Stanford_Online_Products/README-bomb.bin", 8 * BOMB)
    result = _run(tmp_path, data_root, _sop_spec(Built.of(archive)), "--from", str(archive))
    assert result.exit_code == 0, result.output
    prepared = data_root / "sop-mini"
    assert sum(1 for _ in (prepared / "images").rglob("*.JPG")) == built.train_images + built.test_images
    assert not list(prepared.rglob("*bomb*"))


@pytest.mark.parametrize("size", [4 << 20, 256 << 10], ids=["read in chunks", "read at once"])
def test_zip_member_inflating_past_its_declared_size_is_refused(size: int, data_root: Path, tmp_path: Path) -> None:
    """A forged central directory that understates a member's size: caught as the member is inflated."""
    rows = sop_layout(3, 3)
    archive = tmp_path / "Stanford_Online_Products.zip"
    build_sop_zip(archive, rows)
    member = "Stanford_Online_Products/bicycle_final/111_liar.JPG"
    _add_zip_bomb(archive, member, size)
    data = bytearray(archive.read_bytes())
    central = data.rfind(b"PK\x01\x02" + data[data.rfind(b"PK\x01\x02") + 4 : data.rfind(b"PK\x01\x02") + 8])
    assert data[central + 46 : central + 46 + len(member)] == member.encode()
    data[central + 24 : central + 28] = (1000).to_bytes(4, "little")  # uncompressed size: 1000 bytes
    archive.write_bytes(bytes(data))
    result = _run(tmp_path, data_root, _sop_spec(Built.of(archive)), "--from", str(archive))
    _assert_error(result, 4, "inflates past the 1,000 bytes its header declares")
    assert_nothing_left(data_root, "sop-mini")


@pytest.mark.parametrize(
    "member", ["CUB_200_2011/images/001.x/bomb.jpg", "unlisted/bomb.bin"], ids=["listed", "unlisted"]
)
def test_tgz_bomb_is_refused_from_its_header(
    member: str, data_root: Path, tmp_path: Path, cub_mini_rows: list[int]
) -> None:
    archive = tmp_path / "bomb" / "CUB_200_2011.tgz"
    archive.parent.mkdir()
    built = _tgz_with_bomb(archive, cub_mini_rows[:5], member)
    assert built.size < BOMB // 200
    result = _run(tmp_path, data_root, _mini_spec(built), "--from", str(archive))
    _assert_error(result, 4, f"refusing archive member '{member}'", "would inflate to more than", "(10x its")
    assert_nothing_left(data_root, NAME)


def test_gz_inflating_past_the_catalog_content_size_is_refused(data_root: Path, tmp_path: Path) -> None:
    import gzip

    folder = tmp_path / "fm"
    built = build_fashion_files(folder)
    name = "train-labels-idx1-ubyte.gz"
    declared = gzip.decompress((folder / name).read_bytes())
    with gzip.open(folder / name, "wb") as handle:  # the real content, then 48 MiB more
        handle.write(declared)
        for chunk in _zeros(BOMB):
            handle.write(chunk)
    files = tuple(FileSpec(name=n, format="gz", content_size=len(content)) for n, (_, content) in built.items())
    spec = spec_override("fashion-mnist", name="fm-mini", files=files, expect_images={}, expect_classes={})
    result = _run(tmp_path, data_root, spec, "--from", str(folder))
    _assert_error(
        result, 4, f"{name} from", f"decompresses to more than {len(declared):,} bytes", "the catalog expects"
    )
    assert_nothing_left(data_root, "fm-mini")
