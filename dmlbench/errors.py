"""Errors a user can fix. The CLI prints them as `error:` + `hint:` and exits with `exit_code`.

Anything that is not a `DmlbenchError` is a bug and is shown with a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path


class DmlbenchError(Exception):
    """A failure the user can fix; the CLI prints it without a traceback."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(DmlbenchError):
    """Bad option, unknown name, invalid config value (exit 2)."""

    exit_code = 2


class UnknownNameError(UsageError):
    """A registry or catalog lookup failed; the hint lists close matches."""


class ConfigError(UsageError):
    """A config file or `--set` value does not satisfy the schema."""


class OptionError(ConfigError):
    """A verb's options object refused a value: the message names the option's field (`final_seeds`), which a
    front end re-words as what its user typed (`named("--final-seeds")`)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}", hint=f"check the value of {key}")
        self.key, self.reason = key, reason

    def named(self, name: str) -> OptionError:
        """The same error naming `name` (a flag) instead of the field."""
        return OptionError(name, self.reason)


class MissingInputError(DmlbenchError):
    """Something that must exist first is missing or incomplete (exit 3)."""

    exit_code = 3


class RunIncompleteError(MissingInputError):
    """A run directory lacks the files of a finished stage."""


class EnvironmentFailure(DmlbenchError):
    """The machine or the outside world failed us: network, disk, device (exit 4)."""

    exit_code = 4


class DownloadError(EnvironmentFailure):
    """A download failed on every mirror."""


class ChecksumError(EnvironmentFailure):
    """A file's size, checksum or magic bytes are not what the catalog says."""


class DeviceError(EnvironmentFailure):
    """A requested device (CUDA, faiss-gpu) is not available; never silently replaced."""


class InterruptedRunError(DmlbenchError):
    """Work stopped by Ctrl-C after saving what can be resumed (exit 130)."""

    exit_code = 130


def first_line(error: BaseException, *, last: bool = False) -> str:
    """One line that says what `error` is: its message's first (or `last`) non-blank line, else its type's name.

    Libraries raise exceptions with empty messages (and messages of blank lines); indexing their lines
    would turn the user's mistake into an IndexError traceback.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return lines[-1] if last else lines[0]


def from_os_error(
    error: OSError, *, doing: str = "", inside: str | os.PathLike[str] | None = None, hint: str | None = None
) -> DmlbenchError:
    """The user-fixable reading of an OS error (missing, not a folder, read-only, disk full...), naming the path.

    The one translation of OS errors, so one failure has one exit code wherever it happens. `inside`: the
    folder a failed write went into when that folder is this program's own (a staging or dataset folder):
    then nothing the user typed is wrong, whatever errno says (a vanished or clobbered folder, a full or
    read-only disk), so it is an EnvironmentFailure (exit 4), never a usage error (2) or a missing input (3).
    `hint` replaces the generic hint where the caller knows a better next step (a download resumes).
    """
    import errno

    reason = error.strerror or type(error).__name__
    code = error.errno
    if inside is not None:
        if code in (errno.ENOSPC, errno.EDQUOT):
            return EnvironmentFailure(
                f"disk full while {doing or 'writing'} in {os.fspath(inside)}",
                hint=hint or "free some disk space, or choose a location on a larger disk, then rerun",
            )
        return EnvironmentFailure(
            f"cannot write into {os.fspath(inside)}: {reason}",
            hint=hint or "check that the folder is writable (and still there), then rerun",
        )
    where = f" {error.filename}" if error.filename else ""
    action = f"{doing}: " if doing else ""
    if code == errno.ENOENT:
        return MissingInputError(f"{action}{reason}:{where}", hint="check the path")
    # Opening a folder, FIFO, socket or device as a file: say what stands there, not only errno's words.
    special = (errno.EISDIR, errno.EINVAL, errno.ENXIO, errno.ENODEV, errno.ESPIPE, errno.EOPNOTSUPP)
    kind = file_kind(error.filename) if error.filename and code in special else None
    if kind is not None:
        return UsageError(f"{action}{error.filename} is {kind}, not a file", hint="pass a regular file")
    if code in (errno.EISDIR, errno.ENOTDIR, errno.EEXIST):
        return UsageError(
            f"{action}{reason}:{where}", hint="pass a file where a file is expected, a folder for a folder"
        )
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return EnvironmentFailure(
            f"{action}{reason}:{where}", hint="choose a location you can write to, or fix permissions"
        )
    if code in (errno.ENOSPC, errno.EDQUOT):
        return EnvironmentFailure(
            f"{action}{reason}:{where}", hint=hint or "free some disk space and run the command again"
        )
    return EnvironmentFailure(f"{action}{reason}:{where}", hint=hint or "check the path and the disk")


def file_kind(path: str | os.PathLike[str]) -> str | None:
    """What stands at `path` when it is not a regular file: "a folder", "a FIFO (named pipe)", ...; None for a
    regular file (links followed) or nothing at all. Checked before opening: reading a FIFO blocks forever."""
    import stat

    try:
        mode = Path(path).stat().st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def require_file(path: str | os.PathLike[str], *, what: str, hint: str) -> None:
    """The one check of an input file the user named: missing (exit 3) or not a regular file (exit 2), in words."""
    kind = file_kind(path)
    if kind is not None:
        raise UsageError(f"{what} {os.fspath(path)} is {kind}, not a file", hint=hint)
    if not Path(path).is_file():
        raise MissingInputError(f"{what} {os.fspath(path)} does not exist", hint=hint)
