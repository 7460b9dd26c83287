"""utils/signature.flag_group: the flags stand where the group's parameter stood, and the command gets one object."""

from __future__ import annotations

import inspect

import pytest

from dmlbench.utils.signature import flag_group

FLAGS = [
    inspect.Parameter("low", inspect.Parameter.KEYWORD_ONLY, default=0, annotation=int),
    inspect.Parameter("high", inspect.Parameter.KEYWORD_ONLY, default=9, annotation=int),
]


def test_the_flags_replace_the_parameter_and_the_command_gets_what_build_made() -> None:
    seen: dict[str, object] = {}

    @flag_group("span", FLAGS, lambda flags: (flags["low"], flags["high"]))
    def command(name: str, *, span: tuple[int, int], quiet: bool = False) -> None:
        seen.update(name=name, span=span, quiet=quiet)

    assert list(inspect.signature(command).parameters) == ["name", "low", "high", "quiet"]
    # The command's own string annotations are evaluated (typer takes a given signature as is).
    assert inspect.signature(command).parameters["name"].annotation is str
    command("x", low=2, high=5, quiet=True)
    assert seen == {"name": "x", "span": (2, 5), "quiet": True}


def test_a_command_without_the_parameter_is_refused_when_decorated() -> None:
    def command(name: str) -> None:
        pass

    with pytest.raises(TypeError, match="no parameter 'span'"):
        flag_group("span", FLAGS, dict)(command)
