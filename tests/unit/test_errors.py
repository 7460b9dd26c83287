"""errors.first_line, require_file and from_os_error: one honest line for any failure, in words."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from dmlbench.errors import (
    EnvironmentFailure,
    MissingInputError,
    UsageError,
    file_kind,
    first_line,
    from_os_error,
    require_file,
)


@pytest.mark.parametrize(
    ("error", "first", "last"),
    [
        (Exception(), "Exception", "Exception"),  # "".splitlines()[0] was an IndexError
        (EOFError(""), "EOFError", "EOFError"),
        (ValueError("\n \n"), "ValueError", "ValueError"),
        (RuntimeError("\n  size mismatch\n  for fc.weight  \n"), "size mismatch", "for fc.weight"),
    ],
)
def test_first_line_never_indexes_an_empty_message(error: BaseException, first: str, last: str) -> None:
    assert first_line(error) == first
    assert first_line(error, last=True) == last


def test_require_file_says_what_stands_there(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    regular = tmp_path / "file.toml"
    regular.write_text("x")
    require_file(regular, what="config file", hint="h")
    assert file_kind(regular) is None and file_kind(tmp_path / "nothing") is None
    with pytest.raises(UsageError, match="is a FIFO"):
        require_file(fifo, what="config file", hint="h")
    with pytest.raises(UsageError, match="is a folder"):
        require_file(tmp_path, what="config file", hint="h")
    with pytest.raises(MissingInputError, match="does not exist"):
        require_file(tmp_path / "nothing", what="config file", hint="h")
    with pytest.raises(UsageError, match="is a device"):
        require_file("/dev/null", what="config file", hint="h")


def test_os_errors_on_special_files_name_the_kind(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for code in (errno.ENXIO, errno.EINVAL):
        translated = from_os_error(OSError(code, os.strerror(code), str(fifo)))
        assert isinstance(translated, UsageError) and "FIFO" in translated.message
    folder = from_os_error(IsADirectoryError(errno.EISDIR, "Is a directory", str(tmp_path)))
    assert "is a folder, not a file" in folder.message
    missing = from_os_error(FileNotFoundError(errno.ENOENT, "No such file", str(tmp_path / "x")))
    assert isinstance(missing, MissingInputError)


def test_a_failed_write_inside_our_own_folder_is_always_the_environments(tmp_path: Path) -> None:
    # The same errnos that mean "your path is wrong" elsewhere (3, 2) are the machine's failure (4) when the
    # folder is the one this program made: nothing the user typed is wrong.
    for code in (errno.ENOENT, errno.ENOTDIR, errno.EEXIST, errno.EACCES, errno.ENOSPC):
        plain = from_os_error(OSError(code, os.strerror(code), str(tmp_path / "x")))
        inside = from_os_error(
            OSError(code, os.strerror(code), str(tmp_path / "x")), doing="extracting", inside=tmp_path
        )
        assert isinstance(inside, EnvironmentFailure) and inside.exit_code == 4, code
        assert str(tmp_path) in inside.message
        if code in (errno.ENOENT, errno.ENOTDIR, errno.EEXIST):
            assert plain.exit_code in (2, 3)
    full = from_os_error(OSError(errno.ENOSPC, "No space left on device"), doing="extracting", inside=tmp_path)
    assert full.message.startswith("disk full while extracting in ")
    assert from_os_error(OSError(errno.EIO, "I/O error"), inside=tmp_path, hint="rerun").hint == "rerun"
