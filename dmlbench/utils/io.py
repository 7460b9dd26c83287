"""Atomic file writes and checksums: a reader never sees half a file.

Run and dataset folders are copied between machines, so what is inside them is untrusted: a file name
the tool writes may have been replaced by a link to any file of the user's. Atomic writes replace the
name itself (never what a link points to); files written in place (locks, appended logs) are opened
with `open_no_follow`; and the folders' owners refuse every planted link before they write anything
(`refuse_links`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from dmlbench.errors import ConfigError

SCHEMA_VERSION = 1
LINK_HINT = "remove the link (what it points to was not touched), or use another folder"


def link_error(path: Path, what: str = "a symbolic link") -> ConfigError:
    """The one error for a planted link: it names the link, and nothing was written through it."""
    return ConfigError(
        f"{path} is {what}; dmlbench never writes through links inside a run or dataset folder", hint=LINK_HINT
    )


def refuse_links(root: Path, relative: Iterable[str]) -> None:
    """ConfigError naming the first `root/<name>` that is a symbolic link (checked with lstat, never followed).

    List folders before the names inside them: a linked folder is then reported as itself.
    """
    for name in relative:
        path = root / name
        if path.is_symlink():
            raise link_error(path)


def open_no_follow(path: Path, flags: int, mode: int = 0o666) -> int:
    """`os.open` for writing in place: a symbolic link at `path` is refused, and so is anything but a
    regular file with no other hard link (truncating or appending to it would change another file)."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise link_error(path) from None
        if err.errno == errno.ENXIO:  # a fifo or socket nobody reads: O_NONBLOCK kept the open from hanging
            raise link_error(path, "not a regular file") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        os.close(fd)
        what = "a hard link to another file" if stat.S_ISREG(info.st_mode) else "not a regular file"
        raise link_error(path, what)
    os.set_blocking(fd, True)
    return fd


def _current_umask() -> int:
    # os.umask can only be read by setting it; restore it at once.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success it is fsynced and renamed onto `path`.

    On any exception the temp file is removed and `path` is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600 files; results are meant to be shared like any file the user writes.
    tmp.chmod(0o666 & ~_current_umask())
    try:
        yield tmp
        with tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path, text: str) -> None:
    """Write UTF-8 `text` to `path` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, payload: dict[str, Any], *, versioned: bool = True) -> None:
    """Write `payload` as indented JSON, with `schema_version` first unless `versioned=False`."""
    body = {"schema_version": SCHEMA_VERSION, **payload} if versioned else payload
    write_text_atomic(path, json.dumps(body, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON object; raises ValueError naming the file when it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err.msg} at line {err.lineno})") from err
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 JSON (a binary file?)") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


def append_line(path: Path, line: str) -> None:
    """Append one line and flush it to disk (history.jsonl, train.log); a link at `path` is refused."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_no_follow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(line.rstrip("\n") + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
