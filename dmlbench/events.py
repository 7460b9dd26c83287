"""Progress events: how core packages report long work without printing.

A core function takes `on_event: EventHandler | None`; the CLI renders events with rich on stderr,
tests collect them in a list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

EventKind = Literal["start", "advance", "finish", "log"]


@dataclass(frozen=True)
class Event:
    """One progress report.

    `task` names a unit of work (e.g. "download CUB_200_2011.tgz"); `start` carries `total`
    (None when unknown) and `unit` ("B" for bytes shows transfer speed); `advance` adds `amount`;
    `fields` carries live values (loss, lr, ...) shown beside the bar; `log` is a one-line message.
    """

    kind: EventKind
    task: str
    total: float | None = None
    amount: float = 0.0
    unit: str = ""
    message: str = ""
    fields: dict[str, Any] = field(default_factory=dict)


EventHandler = Callable[[Event], None]


def emit(on_event: EventHandler | None, event: Event) -> None:
    """Send `event` to the handler if there is one."""
    if on_event is not None:
        on_event(event)
