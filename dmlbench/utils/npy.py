"""The one reader of `.npy` files (and of `.npz` members): the header is checked against the bytes before
anything is allocated.

A `.npy` header declares its array's shape and dtype, and `np.load` allocates what it declares before
reading: a 100-byte file claiming a shape of (10**12, 512) asks for terabytes. Embeddings files, saved
evaluations and prepared `images.npy` come from folders copied between machines, so every reader goes
through `load_npy`, which refuses a header the file cannot back, object arrays (pickles) and headers
that are not plain numpy ones, with one MissingInputError naming the file.
"""

from __future__ import annotations

import math
import tokenize
import zipfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal

from dmlbench.errors import MissingInputError, first_line

if TYPE_CHECKING:
    import numpy as np

_HINT = "the file is truncated, forged or not a numpy array file; write it again (np.save / np.savez)"
# np.load's own limit on a header's size, kept explicit: a header is a short dict literal.
_MAX_HEADER = 10_000


def _refuse(name: str, reason: str, hint: str | None = None) -> MissingInputError:
    return MissingInputError(f"cannot read {name}: {reason}", hint=hint or _HINT)


def _reason(err: BaseException) -> str:
    return getattr(err, "strerror", None) or first_line(err)


def check_header(handle: IO[bytes], available: int, name: str) -> tuple[tuple[int, ...], np.dtype[np.generic]]:
    """Read the `.npy` header at `handle`'s position and check that the `available` bytes (the whole
    file or member) hold the array it declares; return (shape, dtype). MissingInputError otherwise."""
    import numpy as np

    start = handle.tell()
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(handle, max_header_size=_MAX_HEADER)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(handle, max_header_size=_MAX_HEADER)
        else:  # 3.0 exists only for structured dtypes with non-latin1 field names: never an array of ours
            raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    except (
        ValueError,
        OSError,
        EOFError,
        SyntaxError,
        tokenize.TokenError,
    ) as err:  # numpy parses with ast, then tokenize
        raise _refuse(name, _reason(err)) from None
    if dtype.hasobject:
        raise _refuse(name, "it holds Python objects (a pickle), not numbers")
    declared = math.prod(shape) * dtype.itemsize  # Python ints: a forged shape cannot overflow
    held = available - (handle.tell() - start)
    if declared > held:
        raise _refuse(
            name,
            f"its header declares a {'x'.join(map(str, shape)) or 'scalar'} {dtype} array "
            f"({declared:,} bytes) but the file holds {max(held, 0):,} bytes after it",
        )
    return tuple(int(n) for n in shape), dtype


def load_npy(path: Path, *, mmap_mode: Literal["r"] | None = None, hint: str | None = None) -> np.ndarray:
    """`np.load(path, allow_pickle=False)` of a `.npy` whose header was checked against the file size first.

    MissingInputError naming the file (with `hint`, or a generic one) when it is missing, unreadable,
    forged or truncated.
    """
    import numpy as np

    try:
        with path.open("rb") as handle:
            try:
                check_header(handle, path.stat().st_size, str(path))
            except MissingInputError as err:
                raise MissingInputError(err.message, hint=hint or err.hint) from None
        array = np.load(path, allow_pickle=False, mmap_mode=mmap_mode)
    except (OSError, ValueError, EOFError) as err:
        raise _refuse(str(path), _reason(err), hint) from None
    return np.asarray(array) if mmap_mode is None else array


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an `.npz`, each member's header checked against the member's size first."""
    import numpy as np

    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.filename.endswith(".npy"):
                    with archive.open(info) as member:
                        check_header(member, info.file_size, f"{path} (member {info.filename})")  # type: ignore[arg-type]
        with np.load(path, allow_pickle=False) as arrays:
            return {name: np.asarray(arrays[name]) for name in arrays.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise _refuse(str(path), _reason(err)) from None
