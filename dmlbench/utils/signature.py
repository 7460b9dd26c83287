"""Option groups for typer commands: a command declares one parameter for a group of flags, typer sees the flags.

typer reads a command's parameters from `inspect.signature`, which returns a function's `__signature__`. A
group puts its flags where the command's parameter stood, takes their values on the call and hands the command
one object built from them (an `EvalOptions`, a `LaunchChoice`), so every command spells, documents and checks
a group's flags the same way and no command lists them. Pure `inspect`: no typer import here.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

R = TypeVar("R")


def flag_group(
    name: str, flags: Sequence[inspect.Parameter], build: Callable[[dict[str, Any]], Any]
) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Decorate a command so that `flags` replace its parameter `name`, which receives `build(flag values)`."""
    names = [flag.name for flag in flags]

    def decorate(command: Callable[..., R]) -> Callable[..., R]:
        signature = inspect.signature(command)
        if name not in signature.parameters:
            raise TypeError(f"{command.__qualname__} has no parameter {name!r} for its group of flags")
        # typer takes a given __signature__ as is, and the commands' annotations are strings (postponed): each is
        # evaluated here, except the group's own parameter, whose type may be imported for type checking only.
        own = [
            p.replace(annotation=eval(p.annotation, command.__globals__))  # noqa: S307 - the module's own annotation
            if isinstance(p.annotation, str) and p.name != name
            else p
            for p in signature.parameters.values()
        ]
        at = list(signature.parameters).index(name)
        group = [flag.replace(kind=own[at].kind) for flag in flags]
        parameters = [*own[:at], *group, *own[at + 1 :]]

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> R:
            values = {flag: kwargs.pop(flag) for flag in names}
            return command(*args, **kwargs, **{name: build(values)})

        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": None}
        return wrapper

    return decorate
