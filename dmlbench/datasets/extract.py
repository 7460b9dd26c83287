"""Safe, streaming extraction of tar/tgz/zip archives into a staging folder.

Every member name is checked before anything is written: absolute paths, `..`, links and device
files are refused. Members are streamed one by one, in chunks, with no per-file fsync (the staging
folder is thrown away on failure and `prepared.json` is what marks success). Image members are checked
by their magic bytes, which is much cheaper than decoding them.

An archive is untrusted input, so what it may inflate to is bounded (`ExtractLimits`) before a byte of a
member is written: the archive's size was already checked against the catalog (download or `--from`
verification), and real image archives inflate to about their own size, so the total may be at most
`TOTAL_RATIO` times the archive (plus `FLOOR`), and a zip member at most `MEMBER_RATIO` times its
compressed bytes. A bomb is refused from its headers (zip central directory, tar member header), and a
member whose stream inflates past what its header declared is refused as it is read. Memory stays at
one chunk whatever the member's size.
"""

from __future__ import annotations

import os
import posixpath
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from dmlbench.datasets.download import read_head
from dmlbench.errors import ChecksumError, from_os_error
from dmlbench.events import Event, EventHandler, emit

MemberMap = Callable[[str], str | None]
"""Archive member name -> destination path relative to the staging folder, or None to skip it."""

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_ADVANCE_EVERY = 2000
CHUNK = 1 << 20  # bytes read, inflated and written at a time: the memory one member costs

# JPEG/PNG archives inflate to about their own size (tar headers and text lists add little); these
# leave an order of magnitude of room and still stop a bomb at its header.
TOTAL_RATIO = 10
MEMBER_RATIO = 100
FLOOR = 32 << 20  # small archives (metadata, test fixtures) may inflate this much whatever their ratio


@dataclass(frozen=True)
class ExtractLimits:
    """What one archive may inflate to: `max_total` bytes in all, a zip member `max_ratio` x its
    compressed size (members up to `floor` bytes exempt)."""

    max_total: int
    max_ratio: float = MEMBER_RATIO
    floor: int = FLOOR

    @classmethod
    def for_archive(cls, archive: Path) -> ExtractLimits:
        """The bounds for `archive`, from its size (which the catalog's size was checked against)."""
        return cls(max_total=TOTAL_RATIO * archive.stat().st_size + FLOOR)


def _too_big(name: str, archive: Path, why: str) -> ChecksumError:
    return ChecksumError(
        f"refusing archive member {name!r} of {archive.name}: {why}",
        hint="the archive is malicious (a decompression bomb) or not the dataset the catalog describes; "
        "nothing from it was kept - get the file from a trusted source",
    )


@dataclass
class ExtractResult:
    """What an extraction wrote: destination paths (relative, '/'-separated) and images with bad magic."""

    written: set[str] = field(default_factory=set)
    bad_images: set[str] = field(default_factory=set)


def image_magic_ok(head: bytes) -> bool:
    """JPEG or PNG signature."""
    return head[:3] == b"\xff\xd8\xff" or head[:8] == b"\x89PNG\r\n\x1a\n"


def safe_member_name(name: str, archive: Path) -> str:
    """The normalised member name, or ChecksumError when it could escape the destination."""
    clean = name.replace("\\", "/")
    parts = clean.split("/")
    if clean.startswith("/") or (len(parts[0]) == 2 and parts[0][1] == ":") or ".." in parts:
        raise ChecksumError(
            f"refusing archive member {name!r} of {archive.name}: its path escapes the destination folder",
            hint="the archive is malicious or broken; nothing from it was kept - get the file from a trusted source",
        )
    normal = posixpath.normpath(clean) if clean else ""
    return "" if normal == "." else normal


def _write_file(path: str, chunks: Iterable[bytes], dir_fd: int | None = None) -> None:
    """Write one extracted member chunk by chunk (plain os calls relative to an open folder: this runs once
    per image)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644, dir_fd=dir_fd)
    try:
        for data in chunks:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


_WRITE_HINT = "free some space or use --data-root on a larger disk (or a writable one), then rerun"


class _Writer:
    """Creates folders once, keeps them open (no path walk per file) and records what was written."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.folders: dict[str, int] = {}
        self.result = ExtractResult()

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self.folders.values():
            os.close(fd)
        self.folders.clear()

    def folder(self, folder: str) -> int:
        """An open descriptor of `dest/folder`, created on first use."""
        fd = self.folders.get(folder)
        if fd is None:
            path = self.dest / folder
            try:
                path.mkdir(parents=True, exist_ok=True)
                fd = self.folders[folder] = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            except OSError as err:
                raise from_os_error(err, doing="extracting", inside=self.dest, hint=_WRITE_HINT) from None
        return fd

    def write(self, rel: str, data: bytes | Iterable[bytes]) -> None:
        """Write one member from its bytes or its chunks (a read error of the archive propagates as is)."""
        folder, _, base = rel.rpartition("/")
        fd = self.folder(folder)
        head = bytearray(data[:8] if isinstance(data, bytes) else b"")

        def noting_head(chunks: Iterable[bytes]) -> Iterator[bytes]:
            for chunk in chunks:
                if len(head) < 8:
                    head.extend(chunk[: 8 - len(head)])
                yield chunk

        try:
            _write_file(base, (data,) if isinstance(data, bytes) else noting_head(data), fd)
        except OSError as err:
            if isinstance(err, _ReadError):
                raise err.cause from None
            # A failed write into the staging folder is the disk's fault, never the archive's.
            raise from_os_error(err, doing="extracting", inside=self.dest, hint=_WRITE_HINT) from None
        self.result.written.add(rel)
        if rel.lower().endswith(IMAGE_SUFFIXES) and not image_magic_ok(bytes(head)):
            self.result.bad_images.add(rel)


class _ReadError(OSError):
    """An error reading the archive while a member is written: the archive's fault, not the disk's."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _chunks(handle: BinaryIO, size: int) -> Iterator[bytes]:
    """`size` bytes of `handle`, CHUNK at a time; read errors are tagged as the archive's."""
    left = size
    while left > 0:
        try:
            data = handle.read(min(CHUNK, left))
        except (OSError, EOFError, zlib.error, tarfile.TarError) as err:
            raise _ReadError(err) from None
        if not data:
            raise _ReadError(EOFError("the member is cut short"))
        left -= len(data)
        yield data


def _corrupt(archive: Path, err: BaseException) -> ChecksumError:
    """Reading the archive failed (writes are reported by `_Writer`): it is truncated or damaged."""
    return ChecksumError(
        f"{archive.name} is truncated or corrupt ({type(err).__name__}: {err})",
        hint="delete it and download it again (or check the file given with --from)",
    )


def extract_tar(
    archive: Path,
    dest: Path,
    member_map: MemberMap,
    *,
    on_event: EventHandler | None = None,
    limits: ExtractLimits | None = None,
) -> ExtractResult:
    """Stream a (gzip'd) tar archive; only members `member_map` keeps are written, within `limits`."""
    task = f"extract {archive.name}"
    emit(on_event, Event("start", task, total=None, unit="files"))
    count = 0
    limits = limits or ExtractLimits.for_archive(archive)
    try:
        with _Writer(dest) as writer, tarfile.open(archive, mode="r|*") as tar:
            for member in tar:
                name = safe_member_name(member.name, archive)
                # Where this member ends in the inflated stream: everything before it was inflated to get
                # here, skipped members included, so this bounds the total before the member is read.
                end = member.offset_data + max(member.size, 0)
                if end > limits.max_total:
                    raise _too_big(
                        member.name,
                        archive,
                        f"the archive would inflate to more than {end:,} bytes, over {limits.max_total:,} "
                        f"({TOTAL_RATIO}x its {archive.stat().st_size:,} bytes)",
                    )
                if member.issym() or member.islnk():
                    target = safe_member_name(posixpath.join(posixpath.dirname(name), member.linkname), archive)
                    if member_map(name) is not None:
                        raise ChecksumError(
                            f"refusing archive member {member.name!r} of {archive.name}: a link to {target!r}",
                            hint="links are not extracted; nothing from the archive was kept",
                        )
                    continue
                if not member.isfile():
                    continue  # folders are made on demand; devices and fifos are never created
                rel = member_map(name)
                if rel is None:
                    continue
                handle = tar.extractfile(member)
                assert handle is not None
                writer.write(rel, _chunks(handle, member.size))  # type: ignore[arg-type]
                count += 1
                if count % _ADVANCE_EVERY == 0:
                    emit(on_event, Event("advance", task, amount=_ADVANCE_EVERY))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:  # OSError: e.g. gzip.BadGzipFile
        raise _corrupt(archive, err) from None
    emit(on_event, Event("advance", task, amount=count % _ADVANCE_EVERY))
    emit(on_event, Event("finish", task))
    return writer.result


_LOCAL_HEADER = struct.Struct("<4s5H3L2H")


def _seek_member_data(handle: BinaryIO, info: zipfile.ZipInfo) -> None:
    """Move `handle` to the member's data, past its local header (stored and deflated members only)."""
    handle.seek(info.header_offset)
    header = handle.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local header for {info.filename}")
    fields = _LOCAL_HEADER.unpack(header)
    handle.seek(fields[9] + fields[10], os.SEEK_CUR)  # file name and extra field lengths
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise zipfile.BadZipFile(f"{info.filename} uses unsupported compression {info.compress_type}")


def _zip_member_chunks(handle: BinaryIO, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """One member's bytes, CHUNK at a time, straight from its local header (far less overhead than
    ZipFile.open per member). Inflating past the size the header declares is refused as it happens."""
    try:
        _seek_member_data(handle, info)
    except (OSError, zipfile.BadZipFile) as err:
        raise _ReadError(err) from None
    crc = produced = 0
    for data in _inflated(_chunks(handle, info.compress_size), deflated=info.compress_type == zipfile.ZIP_DEFLATED):
        produced += len(data)
        if produced > info.file_size:
            raise _ReadError(
                zipfile.BadZipFile(f"{info.filename} inflates past the {info.file_size:,} bytes its header declares")
            )
        crc = zlib.crc32(data, crc)
        yield data
    if produced != info.file_size or crc != info.CRC:
        raise _ReadError(zipfile.BadZipFile(f"CRC mismatch in {info.filename}"))


def _read_small_zip_member(handle: BinaryIO, info: zipfile.ZipInfo) -> bytes:
    """A member of at most CHUNK bytes either way, in one read (most images: no per-chunk overhead); its
    inflation is capped at one byte past the declared size all the same."""
    _seek_member_data(handle, info)
    raw = handle.read(info.compress_size)
    if len(raw) != info.compress_size:
        raise zipfile.BadZipFile(f"{info.filename} is cut short")
    if info.compress_type == zipfile.ZIP_STORED:
        data = raw
    else:
        inflater = zlib.decompressobj(-15)
        data = inflater.decompress(raw, info.file_size + 1)
        if len(data) <= info.file_size and not inflater.eof:
            raise zipfile.BadZipFile(f"{info.filename} is cut short")
    if len(data) > info.file_size:
        raise zipfile.BadZipFile(f"{info.filename} inflates past the {info.file_size:,} bytes its header declares")
    if len(data) != info.file_size or zlib.crc32(data) != info.CRC:
        raise zipfile.BadZipFile(f"CRC mismatch in {info.filename}")
    return data


def _inflated(raw: Iterator[bytes], *, deflated: bool) -> Iterator[bytes]:
    """The bytes of a stored or raw-deflate stream, never more than CHUNK per piece."""
    if not deflated:
        yield from raw
        return
    inflater = zlib.decompressobj(-15)
    try:
        for block in raw:
            pending = block
            while pending:  # max_length caps one call's output; what it did not consume comes back as the tail
                yield inflater.decompress(pending, CHUNK)
                pending = inflater.unconsumed_tail
        while not inflater.eof:  # all input given; zlib may still hold output
            data = inflater.decompress(b"", CHUNK)
            if not data:
                raise _ReadError(EOFError("the member's deflate stream is cut short"))
            yield data
    except zlib.error as err:
        raise _ReadError(err) from None


def extract_zip(
    archive: Path,
    dest: Path,
    member_map: MemberMap,
    *,
    on_event: EventHandler | None = None,
    limits: ExtractLimits | None = None,
) -> ExtractResult:
    """Extract the members `member_map` keeps from a zip archive within `limits`, checking every CRC."""
    task = f"extract {archive.name}"
    limits = limits or ExtractLimits.for_archive(archive)
    try:
        with _Writer(dest) as writer, zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            plan: list[tuple[zipfile.ZipInfo, str]] = []
            total = 0
            for info in infos:
                name = safe_member_name(info.filename, archive)
                is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
                if info.is_dir() or not name:
                    continue
                rel = member_map(name)
                if rel is None:
                    continue
                if is_link:
                    raise ChecksumError(
                        f"refusing archive member {info.filename!r} of {archive.name}: it is a symbolic link",
                        hint="links are not extracted; nothing from the archive was kept",
                    )
                if info.file_size > limits.floor and info.file_size > limits.max_ratio * max(info.compress_size, 1):
                    raise _too_big(
                        info.filename,
                        archive,
                        f"it inflates {info.compress_size:,} bytes to {info.file_size:,} "
                        f"(more than {limits.max_ratio:g}x)",
                    )
                total += info.file_size
                if total > limits.max_total:
                    raise _too_big(
                        info.filename,
                        archive,
                        f"the listed members inflate to more than {limits.max_total:,} bytes "
                        f"({TOTAL_RATIO}x the archive's {archive.stat().st_size:,} bytes)",
                    )
                plan.append((info, rel))
            emit(on_event, Event("start", task, total=len(plan), unit="files"))
            plan.sort(key=lambda item: item[0].header_offset)  # sequential reads
            with archive.open("rb") as handle:
                for count, (info, rel) in enumerate(plan, start=1):
                    small = info.file_size <= CHUNK and info.compress_size <= CHUNK
                    writer.write(
                        rel, _read_small_zip_member(handle, info) if small else _zip_member_chunks(handle, info)
                    )
                    if count % _ADVANCE_EVERY == 0:
                        emit(on_event, Event("advance", task, amount=_ADVANCE_EVERY))
            emit(on_event, Event("advance", task, amount=len(plan) % _ADVANCE_EVERY))
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
        raise _corrupt(archive, err) from None
    emit(on_event, Event("finish", task))
    return writer.result


def extract_archive(
    archive: Path,
    dest: Path,
    member_map: MemberMap,
    *,
    on_event: EventHandler | None = None,
    limits: ExtractLimits | None = None,
) -> ExtractResult:
    """Extract a zip or (gzip'd) tar archive, chosen by its magic bytes, within `limits` (default: from
    the archive's size, `ExtractLimits.for_archive`)."""
    if read_head(archive, 2) == b"PK":
        return extract_zip(archive, dest, member_map, on_event=on_event, limits=limits)
    return extract_tar(archive, dest, member_map, on_event=on_event, limits=limits)


def copy_tree(
    src: Path, dest: Path, member_map: MemberMap, *, on_event: EventHandler | None = None, task: str = ""
) -> ExtractResult:
    """Copy the files of an already-extracted folder that `member_map` keeps (hard links when possible)."""
    task = task or f"copy {src.name}"
    emit(on_event, Event("start", task, total=None, unit="files"))
    with _Writer(dest) as writer:
        count = _copy_files(src, dest, member_map, writer, on_event, task)
    emit(on_event, Event("advance", task, amount=count % _ADVANCE_EVERY))
    emit(on_event, Event("finish", task))
    return writer.result


def refuse_outside_link(path: Path, inside: Path) -> None:
    """A --from folder may hold links only to places inside it, as archives may hold none that escape."""
    target = path.resolve()
    if target != inside and inside not in target.parents:
        raise ChecksumError(
            f"refusing {path}: a link to {target}, outside the --from folder",
            hint="copy the real files into the folder (links that leave it are never followed)",
        )


def _copy_files(
    src: Path, dest: Path, member_map: MemberMap, writer: _Writer, on_event: EventHandler | None, task: str
) -> int:
    """Copy the kept files; return how many."""
    count = 0
    inside = src.resolve()
    for root, dirs, files in os.walk(src):
        rel_root = os.path.relpath(root, src).replace(os.sep, "/")
        for link in [d for d in dirs if (Path(root) / d).is_symlink()]:
            refuse_outside_link(Path(root) / link, inside)
        for file_name in files:
            name = file_name if rel_root == "." else f"{rel_root}/{file_name}"
            rel = member_map(name)
            if rel is None:
                continue
            source_path = Path(root) / file_name
            if source_path.is_symlink():
                refuse_outside_link(source_path, inside)
            writer.folder(posixpath.dirname(rel))
            if rel.lower().endswith(IMAGE_SUFFIXES) and not image_magic_ok(read_head(source_path, 8)):
                writer.result.bad_images.add(rel)
            try:
                os.link(source_path, dest / rel)
                writer.result.written.add(rel)
            except OSError:  # another file system: copied, a chunk at a time like an archive member
                try:
                    with source_path.open("rb") as handle:
                        writer.write(rel, _chunks(handle, source_path.stat().st_size))
                except (OSError, EOFError) as err:  # the writer's own failures are DmlbenchErrors already
                    raise ChecksumError(
                        f"cannot read {source_path}: {err}",
                        hint="check the --from folder (a file changed while copied?)",
                    ) from None
            count += 1
            if count % _ADVANCE_EVERY == 0:
                emit(on_event, Event("advance", task, amount=_ADVANCE_EVERY))
    return count
