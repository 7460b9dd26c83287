"""Errors a user can fix. The CLI prints them as `error:` + `hint:` and exits with `exit_code`.

Anything that is not a `DmlbenchError` is a bug and is shown with a traceback.
"""

from __future__ import annotations


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


def from_os_error(error: OSError, *, doing: str = "") -> DmlbenchError:
    """The user-fixable reading of an OS error (missing, not a folder, read-only, disk full...), naming the path."""
    import errno

    where = f" {error.filename}" if error.filename else ""
    action = f"{doing}: " if doing else ""
    reason = error.strerror or type(error).__name__
    code = error.errno
    if code == errno.ENOENT:
        return MissingInputError(f"{action}{reason}:{where}", hint="check the path")
    if code in (errno.EISDIR, errno.ENOTDIR, errno.EEXIST):
        return UsageError(
            f"{action}{reason}:{where}", hint="pass a file where a file is expected, a folder for a folder"
        )
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return EnvironmentFailure(
            f"{action}{reason}:{where}", hint="choose a location you can write to, or fix permissions"
        )
    if code in (errno.ENOSPC, errno.EDQUOT):
        return EnvironmentFailure(f"{action}{reason}:{where}", hint="free some disk space and run the command again")
    return EnvironmentFailure(f"{action}{reason}:{where}", hint="check the path and the disk")
