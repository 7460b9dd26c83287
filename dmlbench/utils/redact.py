"""The one redaction of secrets in storage URLs: every message, log line and record that can quote one uses it.

A study storage may be any URL SQLAlchemy accepts or a libpq connection string, and each spells a
password its own way: `scheme://user:PASSWORD@host/db` (the password may hold `@`, `/`, `:` or spaces:
SQLAlchemy reads it up to the last `@`), `?password=...` (or `passwd`, `pwd`, `sslpassword`, with a
percent-encoded key), and libpq's `password=...` / `password = '...'` keyword form. Masking errs on the
side of hiding too much: a host swallowed into the mask costs nothing, a leaked password does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote

MASK = "***"

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
# userinfo with a password: `//name:` (name without `:`, `/`, `@`) then everything up to the segment's last `@`.
_USERINFO = re.compile(r"^([^:/@\s]*):(.*)@", re.DOTALL)
# A query parameter or libpq keyword whose value is a secret; the key may be percent-encoded.
_KEY = r"(?:[A-Za-z_]|%[0-9A-Fa-f]{2})+"
_PAIR = re.compile(rf"(?P<key>{_KEY})(?P<eq>\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'?|[^&;\s]*)")


def _is_secret_key(key: str) -> bool:
    name = unquote(key).lower()
    return name.endswith(("password", "passwd")) or name in ("pwd", "pass")


def _mask_pairs(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        if not _is_secret_key(match["key"]):
            return match[0]
        return f"{match['key']}{match['eq']}{MASK}"

    return _PAIR.sub(replace, text)


def _mask_userinfo(text: str) -> str:
    """Mask the password of every `scheme://user:password@` in `text` (each URL up to the next one or line end)."""
    pieces: list[str] = []
    position = 0
    starts = [m.end() for m in _SCHEME.finditer(text)]
    for index, start in enumerate(starts):
        pieces.append(text[position:start])
        end = starts[index + 1] if index + 1 < len(starts) else len(text)
        line_end = text.find("\n", start)
        if line_end != -1:
            end = min(end, line_end)
        segment = text[start:end]
        match = _USERINFO.match(segment)
        if match is not None and match.group(2):
            segment = f"{match.group(1)}:{MASK}@{segment[match.end() :]}"
        pieces.append(segment)
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


def _passwords(spec: str) -> list[str]:
    """The literal passwords a storage spec holds, raw and percent-decoded (to mask them wherever they reappear)."""
    found: list[str] = []
    for match in _SCHEME.finditer(spec):
        userinfo = _USERINFO.match(spec[match.end() :].split("\n", 1)[0])
        if userinfo is not None and userinfo.group(2):
            found.append(userinfo.group(2))
    for match in _PAIR.finditer(spec):
        if _is_secret_key(match["key"]) and match["value"]:
            found.append(match["value"].strip("'"))
    decoded = [unquote(value) for value in found]
    return [value for value in {*found, *decoded} if len(value) >= 3]


def redact(text: str, *, known: Iterable[str | None] = ()) -> str:
    """`text` with every storage password masked; `known` specs' passwords are also masked wherever they appear.

    Pass the storage spec in `known` when `text` is a driver's message about it: a driver may quote the
    password decoded, outside any URL.
    """
    masked = _mask_pairs(_mask_userinfo(text))
    for spec in known:
        if spec:
            for secret in sorted(_passwords(spec), key=len, reverse=True):
                masked = masked.replace(secret, MASK)
    return masked
