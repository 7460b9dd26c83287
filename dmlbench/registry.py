"""One lazy registry mechanism for losses, backbones, sources, metrics and renderers.

Targets are `"module:attr"` strings, imported on first use, so listing names never imports torch.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from dmlbench.errors import ConfigError, UnknownNameError

T = TypeVar("T")


def did_you_mean(name: str, known: list[str]) -> str:
    """Return 'did you mean 'x'? ' for close matches of `name`, or an empty string."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    return f"did you mean {' or '.join(map(repr, close))}? " if close else ""


class Registry(Generic[T]):
    """A table `name -> "module:attr"` with did-you-mean lookups and signature-checked builds."""

    def __init__(self, kind: str, base: type | None = None) -> None:
        self.kind = kind
        self.base = base
        self._targets: dict[str, str] = {}

    def add(self, name: str, target: str) -> None:
        """Register `target` ("package.module:Attr") under `name`; names are unique."""
        if name in self._targets:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        if ":" not in target:
            raise ValueError(f"target {target!r} must look like 'package.module:Attr'")
        self._targets[name] = target

    def names(self) -> list[str]:
        """Registered names in registration order."""
        return list(self._targets)

    def __contains__(self, name: object) -> bool:
        return name in self._targets

    def target(self, name: str) -> str:
        """The "module:attr" string of `name` (raises UnknownNameError)."""
        self._check(name)
        return self._targets[name]

    def _check(self, name: str) -> None:
        if name not in self._targets:
            known = self.names()
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}",
                hint=f"{did_you_mean(name, known)}known: {', '.join(known)}",
            )

    def get(self, name: str) -> Any:
        """Import and return the object registered as `name`, checked against the base class."""
        self._check(name)
        module_name, _, attr = self._targets[name].partition(":")
        obj = getattr(importlib.import_module(module_name), attr)
        if self.base is not None and not (isinstance(obj, type) and issubclass(obj, self.base)):
            raise TypeError(f"{self._targets[name]} is registered as a {self.kind} but is not a {self.base.__name__}")
        return obj

    def build(self, name: str, params: Mapping[str, Any] | None = None, **context: Any) -> Any:
        """Instantiate `name` with user `params` (checked against the signature) plus declared `context`.

        Context values (e.g. num_classes, embedding_dim) are passed only to constructors whose
        signature names them, so one call site can build every entry.
        """
        factory = self.get(name)
        params = dict(params or {})
        signature = inspect.signature(factory)
        accepted = {
            p.name
            for p in signature.parameters.values()
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        }
        unknown = sorted(set(params) - accepted)
        if unknown:
            first = unknown[0]
            raise ConfigError(
                f"{self.kind} {name!r} has no parameter {first!r}",
                hint=f"{did_you_mean(first, sorted(accepted))}parameters: {', '.join(sorted(accepted)) or 'none'}",
            )
        kwargs = {key: value for key, value in context.items() if key in accepted and key not in params}
        kwargs.update(params)
        try:
            return factory(**kwargs)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"cannot build {self.kind} {name!r}: {err}", hint="check the parameter values") from err

    def parameters(self, name: str) -> dict[str, Any]:
        """Default keyword parameters of `name` (what a resolved config writes out)."""
        factory = self.get(name)
        return {
            p.name: p.default
            for p in inspect.signature(factory).parameters.values()
            if p.default is not inspect.Parameter.empty
        }
