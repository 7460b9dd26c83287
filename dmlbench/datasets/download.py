"""HTTP(S) downloads with Range resume, mirrors tried in order, and size/checksum/magic-byte checks.

A download goes to `<file>.part` and is renamed only after it is verified, so an interrupted
download resumes next time and a file without `.part` has always passed its checks.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import logging
import os
import socket
import urllib.error
import urllib.request
import zlib
from http.client import HTTPException
from pathlib import Path

from dmlbench.datasets.spec import FileSpec
from dmlbench.errors import ChecksumError, DownloadError, from_os_error
from dmlbench.events import Event, EventHandler, emit
from dmlbench.utils.io import open_no_follow

log = logging.getLogger(__name__)

CHUNK = 1 << 20
TIMEOUT_S = 60.0
USER_AGENT = "dmlbench (+https://github.com/dmlbench)"

_FORMAT_NAMES = {
    "tgz": "gzip'd tar archive",
    "tar": "tar archive",
    "zip": "zip archive",
    "gz": "gzip file",
    "mat": "MATLAB 5.0 .mat file",
    "file": "file",
}


def looks_like_html(head: bytes) -> bool:
    """True when the bytes start like a web page (a server's error or login page saved as the file)."""
    text = head.lstrip()[:512].lower()
    return text.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")) or b"<html" in text[:256]


def magic_ok(fmt: str, head: bytes) -> bool:
    """Whether `head` (the first 512+ bytes of a file) starts like a file of format `fmt`."""
    if fmt in ("tgz", "gz"):
        return head[:2] == b"\x1f\x8b"
    if fmt == "zip":
        return head[:4] in (b"PK\x03\x04", b"PK\x05\x06")
    if fmt == "tar":
        return head[257:262] == b"ustar"
    if fmt == "mat":
        return head.startswith(b"MATLAB 5.0 MAT-file")
    return True


def read_head(path: Path, size: int = 1024) -> bytes:
    """The first `size` bytes of a file."""
    with path.open("rb") as handle:
        return handle.read(size)


def check_magic(spec: FileSpec, path: Path, origin: str) -> None:
    """Raise ChecksumError when `path` is not a file of `spec.format` (an HTML page gets its own message)."""
    head = read_head(path)
    if magic_ok(spec.format, head):
        return
    kind = _FORMAT_NAMES[spec.format]
    if looks_like_html(head):
        raise ChecksumError(
            f"{spec.name} from {origin} is an HTML page, not a {kind}",
            hint="the server sent an error or login page instead of the file; the link may be dead - "
            "download it by hand and run `dmlbench prepare ... --from PATH`",
        )
    raise ChecksumError(
        f"{spec.name} from {origin} is not a {kind} (unexpected first bytes {head[:8]!r})",
        hint="the file is damaged or is another file under this name; delete it and get it again",
    )


def file_digests(path: Path) -> tuple[str, str]:
    """(md5, sha256) of a file in one pass."""
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            md5.update(chunk)
            sha.update(chunk)
    return md5.hexdigest(), sha.hexdigest()


def verify_file(spec: FileSpec, path: Path, origin: str) -> None:
    """Check magic bytes, then size, then md5/sha256 where the catalog knows them."""
    check_magic(spec, path, origin)
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        raise ChecksumError(
            f"{spec.name} from {origin} has {size:,} bytes, expected {spec.size:,}",
            hint="the file is truncated or a different version; delete it and download again",
        )
    if spec.md5 is None and spec.sha256 is None:
        return
    md5, sha = file_digests(path)
    for algo, want, got in (("md5", spec.md5, md5), ("sha256", spec.sha256, sha)):
        if want is not None and got != want:
            raise ChecksumError(
                f"{spec.name} from {origin}: {algo} mismatch (got {got}, expected {want})",
                hint="the file is corrupt or a different version; delete it and download again",
            )


# A .gz may inflate to the catalog's content_size exactly; without one, to this many times its own size
# (idx image files compress about 3-5x) plus a floor: a bomb stops at the bound, never in memory whole.
CONTENT_RATIO = 20
CONTENT_FLOOR = 32 << 20


def content_limit(spec: FileSpec, compressed: int) -> int:
    """The most bytes `spec`'s decompressed content may have."""
    return spec.content_size if spec.content_size is not None else CONTENT_RATIO * compressed + CONTENT_FLOOR


def verify_content(spec: FileSpec, path: Path, origin: str) -> bytes:
    """Decompress a .gz (or read a plain file) and check the catalog's content size/sha256; return the bytes.

    Decompression stops one byte past `content_limit`: a file that inflates further is refused.
    """
    try:
        size = path.stat().st_size
        limit = content_limit(spec, size)
        with path.open("rb") as handle:
            gzipped = handle.read(2) == b"\x1f\x8b"
            handle.seek(0)
            if gzipped:
                with gzip.GzipFile(fileobj=handle) as inflated:
                    data = inflated.read(limit + 1)
            else:
                data = handle.read(limit + 1)
    except (OSError, EOFError, zlib.error) as err:
        raise ChecksumError(
            f"{path.name} from {origin} is not a valid gzip file ({err})",
            hint="the file is truncated or damaged; get it again",
        ) from None
    if len(data) > limit:
        raise ChecksumError(
            f"{path.name} from {origin} decompresses to more than {limit:,} bytes "
            + (
                f"(the catalog expects {spec.content_size:,})"
                if spec.content_size is not None
                else f"({size:,} compressed)"
            ),
            hint=f"the file is malicious (a decompression bomb) or not the {spec.name} the catalog describes",
        )
    if looks_like_html(data[:512]):
        raise ChecksumError(f"{path.name} from {origin} is an HTML page, not {spec.name}", hint="get the real file")
    if spec.content_size is not None and len(data) != spec.content_size:
        raise ChecksumError(
            f"{path.name} from {origin} decompresses to {len(data):,} bytes, expected {spec.content_size:,}",
            hint=f"this is not the {spec.name} the catalog describes; check the file",
        )
    if spec.content_sha256 is not None:
        got = hashlib.sha256(data).hexdigest()
        if got != spec.content_sha256:
            raise ChecksumError(
                f"{path.name} from {origin}: content sha256 mismatch (got {got}, expected {spec.content_sha256})",
                hint=f"this is not the {spec.name} the catalog describes; check the file",
            )
    return data


def _network_reason(err: BaseException) -> str:
    reason = getattr(err, "reason", err)
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return "cannot resolve the host name"
    if isinstance(reason, TimeoutError | socket.timeout):
        return "timed out"
    return str(reason) or type(reason).__name__


def _fetch_once(url: str, part: Path, spec: FileSpec, on_event: EventHandler | None, timeout: float) -> None:
    """Download `url` into `part`, resuming from its current size when the server honours Range."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:
            # What we have is not a prefix the server recognises (often: already complete); restart cleanly.
            part.unlink()
            return _fetch_once(url, part, spec, on_event, timeout)
        raise DownloadError(f"HTTP {err.code} {err.reason} from {url}", hint="the mirror failed") from None
    except (urllib.error.URLError, OSError, HTTPException) as err:
        raise DownloadError(f"cannot reach {url}: {_network_reason(err)}", hint="check the network") from None
    with response:
        status = response.status
        if status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {have}-"):
                raise DownloadError(f"{url} answered Range {have}- with {content_range!r}", hint="the mirror failed")
            mode = "ab"
        else:
            have, mode = 0, "wb"
        length = response.headers.get("Content-Length")
        total = spec.size or (int(length) + have if length is not None else None)
        if "text/html" in response.headers.get("Content-Type", "") and spec.format != "file":
            head = response.read(1024)
            if looks_like_html(head) or not magic_ok(spec.format, head):
                raise ChecksumError(
                    f"{spec.name} from {url} is an HTML page, not a {_FORMAT_NAMES[spec.format]}",
                    hint="the server sent an error or login page; the link may be dead - "
                    "download the file by hand and use --from PATH",
                )
            first = head
        else:
            first = b""
        task = f"download {spec.name}"
        emit(on_event, Event("start", task, total=total, unit="B", message=url))
        if have:
            emit(on_event, Event("advance", task, amount=have))
        received = 0
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "ab" else os.O_TRUNC)
        with os.fdopen(open_no_follow(part, flags), mode) as handle:  # a planted link is refused, never followed
            try:
                if first:
                    handle.write(first)
                    received += len(first)
                    emit(on_event, Event("advance", task, amount=len(first)))
                while chunk := response.read(CHUNK):
                    handle.write(chunk)
                    received += len(chunk)
                    emit(on_event, Event("advance", task, amount=len(chunk)))
            except OSError as err:
                if err.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise from_os_error(
                        err,
                        doing=f"downloading {spec.name}",
                        inside=part.parent,
                        hint="free some space or use --data-root on a larger disk, then rerun (it resumes)",
                    ) from None
                raise DownloadError(
                    f"download of {spec.name} from {url} broke off after {have + received:,} bytes: "
                    f"{_network_reason(err)}",
                    hint="rerun the same command; it resumes where it stopped",
                ) from None
            except HTTPException as err:
                raise DownloadError(
                    f"download of {spec.name} from {url} broke off after {have + received:,} bytes ({err!r})",
                    hint="rerun the same command; it resumes where it stopped",
                ) from None
        emit(on_event, Event("finish", task))
        if length is not None and received < int(length):
            raise DownloadError(
                f"download of {spec.name} from {url} ended after {have + received:,} bytes",
                hint="rerun the same command; it resumes where it stopped",
            )
    return None


def download_file(
    spec: FileSpec, dest_dir: Path, *, on_event: EventHandler | None = None, timeout: float = TIMEOUT_S
) -> Path:
    """Return a verified `dest_dir/spec.name`, downloading it (resuming, mirror after mirror) when needed.

    Raises DownloadError when every mirror failed to deliver, ChecksumError when what they delivered
    was not the file (the bad copy is deleted; a merely interrupted `.part` is kept for resume).
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / spec.name
    if final.exists():
        try:
            verify_file(spec, final, str(final))
            return final
        except ChecksumError:
            log.warning("%s failed verification; downloading it again", final)
            final.unlink()
    if not spec.urls:
        raise DownloadError(
            f"{spec.name} has no download URL in the catalog",
            hint=f"get {spec.name} by hand and run `dmlbench prepare NAME --from PATH`",
        )
    part = dest_dir / f"{spec.name}.part"
    failures: list[str] = []
    last: DownloadError | ChecksumError | None = None
    for url in spec.urls:
        try:
            _fetch_once(url, part, spec, on_event, timeout)
            verify_file(spec, part, url)
        except ChecksumError as err:
            part.unlink(missing_ok=True)  # a wrong file must never be resumed
            failures.append(err.message)
            last = err
            continue
        except DownloadError as err:
            failures.append(err.message)
            last = err
            continue
        part.replace(final)
        return final
    assert last is not None
    message = last.message if len(failures) == 1 else f"all {len(failures)} mirrors failed: {'; '.join(failures)}"
    hint = last.hint if isinstance(last, ChecksumError) else None
    hint = hint or (
        "check the network and rerun (a partial download resumes), or download the file by hand and use --from PATH"
    )
    raise type(last)(message, hint=hint)
