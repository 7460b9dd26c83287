"""The one registry mechanism: lazy targets, did-you-mean, signature-checked builds."""

from __future__ import annotations

import pytest

from dmlbench.errors import ConfigError, UnknownNameError
from dmlbench.registry import Registry


class Base:
    pass


class Widget(Base):
    def __init__(self, *, size: int = 3, num_classes: int = 0) -> None:
        self.size = size
        self.num_classes = num_classes


def make_registry() -> Registry[Base]:
    registry: Registry[Base] = Registry("widget", base=Base)
    registry.add("widget", f"{__name__}:Widget")
    registry.add("not-a-widget", "pathlib:Path")
    return registry


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(UnknownNameError) as info:
        make_registry().get("widgte")
    assert "'widget'" in (info.value.hint or "")


def test_wrong_base_class_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        make_registry().get("not-a-widget")


def test_build_injects_only_declared_context_and_rejects_unknown_params() -> None:
    registry = make_registry()
    widget = registry.build("widget", {"size": 5}, num_classes=7, embedding_dim=16)
    assert (widget.size, widget.num_classes) == (5, 7)
    with pytest.raises(ConfigError) as info:
        registry.build("widget", {"sise": 5})
    assert "'size'" in (info.value.hint or "")


def test_duplicate_names_are_refused() -> None:
    registry = make_registry()
    with pytest.raises(ValueError):
        registry.add("widget", f"{__name__}:Widget")


def test_parameters_lists_defaults() -> None:
    assert make_registry().parameters("widget") == {"size": 3, "num_classes": 0}
