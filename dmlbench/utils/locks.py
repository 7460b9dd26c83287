"""Exclusive advisory locks on a file (flock): one writer per run folder or prepared dataset.

The kernel drops a flock when its holder dies, SIGKILL included, so a lock left by a dead process is
simply taken over. The lock file records who holds it, for the message a second writer gets.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from dmlbench.errors import ConfigError
from dmlbench.utils.io import open_no_follow


@contextlib.contextmanager
def exclusive_lock(path: Path, *, holder: str, what: str) -> Iterator[None]:
    """Hold `path`'s exclusive lock for the block, or raise ConfigError naming the holder's pid and host.

    The file is opened (created) by the caller's rules: OSErrors propagate for the caller to translate.
    The lock file is truncated and rewritten in place, so a link planted at `path` is refused (ConfigError).
    """
    handle = os.fdopen(open_no_follow(path, os.O_RDWR | os.O_CREAT), "r+", encoding="utf-8", errors="replace")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read(256).strip() or "another process"
            raise ConfigError(
                f"{what} is in use by {owner}", hint="wait for it to finish, or use another folder"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{holder} pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
    finally:
        handle.close()


def lock_holder(path: Path) -> str | None:
    """Who holds `path`'s lock now, or None when nobody does (or there is no lock file)."""
    try:  # never through a link: the holder line would show another file's first line
        handle = os.fdopen(
            os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "r", encoding="utf-8", errors="replace"
        )
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read(256).strip() or "another process"
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return None
