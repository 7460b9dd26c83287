"""Nested tables as dotted keys: `{"optim": {"lr": 1e-3}}` <-> `{"optim.lr": 1e-3}`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys -> leaf values (a nested mapping is walked, never stored)."""
    flat: dict[str, Any] = {}
    for k, value in data.items():
        key = f"{prefix}{k}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, key + "."))
        else:
            flat[key] = value
    return flat
