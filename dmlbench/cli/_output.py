"""Rendering shared by every command: stdout for results, stderr for progress, logs and errors."""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from dmlbench.errors import DmlbenchError, OptionError, from_os_error
from dmlbench.events import Event
from dmlbench.paths import Places

out = Console(soft_wrap=True)  # results only
err = Console(stderr=True)  # progress, logs, errors

P = ParamSpec("P")
R = TypeVar("R")


# C0 and C1 control characters (ESC starts colour, cursor and OSC title/hyperlink sequences; CR rewrites the
# line), DEL, and the Unicode marks that reorder or hide text. Tab stays; newline only where asked.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_UNSAFE_OR_NEWLINE = re.compile(f"{_UNSAFE.pattern[:-1]}\n]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: object, *, newlines: bool = False) -> str:
    """`text` safe for a terminal: every control character shown as `\\xNN` / `\\uNNNN`, never interpreted.

    The one guard for text that comes from files (run folders, manifests, journals, catalogs, file names,
    and the error messages that quote them): a run folder must not be able to recolour the terminal, set
    its title, or rewrite a line with `\\r` to forge a message. `newlines` keeps line breaks (tables, reports).
    """
    return (_UNSAFE if newlines else _UNSAFE_OR_NEWLINE).sub(_escaped, str(text))


def shown(text: object) -> str:
    """`printable(text)` for a rich markup string: also escapes rich's `[...]` markup."""
    return escape(printable(text))


def print_error(error: DmlbenchError) -> None:
    """One `error:` line and one `hint:` line on stderr (their text quotes paths and files: made printable)."""
    from dmlbench.utils.redact import redact

    err.print(f"[bold red]error:[/] {shown(redact(error.message))}", soft_wrap=True, highlight=False)
    if error.hint:
        err.print(f"[yellow]hint:[/] {shown(redact(error.hint))}", soft_wrap=True, highlight=False)


def friendly_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn DmlbenchError (and OS errors) into message + hint + exit code, and Ctrl-C into exit 130."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except DmlbenchError as error:
            print_error(error)
            raise typer.Exit(code=error.exit_code) from None
        except OSError as error:  # a path the user gave is missing, read-only, full...: never a traceback
            translated = from_os_error(error)
            print_error(translated)
            raise typer.Exit(code=translated.exit_code) from None
        except KeyboardInterrupt:
            err.print("[bold red]error:[/] interrupted", highlight=False)
            raise typer.Exit(code=130) from None

    return wrapper


class _SafeRecords(logging.Filter):
    """Log lines quote file names and file contents (and storage URLs): made printable and redacted here."""

    def filter(self, record: logging.LogRecord) -> bool:
        from dmlbench.utils.redact import redact

        record.msg = printable(redact(record.getMessage()), newlines=True)
        record.args = None
        return True


def setup_logging(verbose: bool = False) -> None:
    """Route the core's `logging` records to stderr through rich."""
    root = logging.getLogger("dmlbench")
    if not any(isinstance(h, RichHandler) for h in root.handlers):
        handler = RichHandler(console=err, show_path=False, show_time=False)
        handler.addFilter(_SafeRecords())
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def env_path(name: str) -> Path | None:
    """A path from the environment (only the CLI reads environment variables)."""
    value = os.environ.get(name)
    return Path(value) if value else None


def resolve_data_root(flag: Path | None) -> Path:
    """--data-root, else DMLBENCH_DATA_ROOT, else $XDG_CACHE_HOME/dmlbench/data (~/.cache/...)."""
    from dmlbench.paths import default_data_root

    if flag is not None:
        return flag
    from_env = env_path("DMLBENCH_DATA_ROOT")
    if from_env is not None:
        return from_env
    cache_home = env_path("XDG_CACHE_HOME")
    return cache_home / "dmlbench" / "data" if cache_home else default_data_root()


def resolve_runs_root(flag: Path | None) -> Path:
    """--runs-root, else DMLBENCH_RUNS_ROOT, else ./runs."""
    from dmlbench.paths import default_runs_root

    if flag is not None:
        return flag
    return env_path("DMLBENCH_RUNS_ROOT") or default_runs_root()


def resolve_places(data_root: Path | None, runs_root: Path | None = None, catalog: list[Path] | None = None) -> Places:
    """The one `Places` value a command hands to the core, from its --data-root, --runs-root and --catalog."""
    return Places(resolve_data_root(data_root), resolve_runs_root(runs_root), tuple(catalog or ()))


def flag_error(refused: OptionError, renamed: dict[str, str] | None = None) -> OptionError:
    """`refused` naming the flag that set its field: `--final-seeds` for `final_seeds`, or what `renamed` says
    for a field whose flag is spelt otherwise (`config_file` -> `--config`)."""
    field = refused.key.split(".")[0]
    return refused.named((renamed or {}).get(field) or "--" + field.replace("_", "-"))


class ProgressRenderer:
    """Render core `Event`s as rich progress bars on stderr; a no-op when quiet."""

    def __init__(self, *, quiet: bool = False) -> None:
        self.quiet = quiet
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> ProgressRenderer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _ensure_progress(self, unit: str) -> Progress:
        if self._progress is None:
            columns: list[Any] = [TextColumn("{task.description}"), BarColumn()]
            if unit == "B":
                columns += [DownloadColumn(), TransferSpeedColumn()]
            else:
                columns += [MofNCompleteColumn()]
            columns += [TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}")]
            self._progress = Progress(*columns, console=err, transient=False)
            self._progress.start()
        return self._progress

    def __call__(self, event: Event) -> None:
        """Handle one event (pass the renderer itself as `on_event`)."""
        if event.kind == "log":
            if not self.quiet:
                err.print(shown(event.message), highlight=False, soft_wrap=True)
            return
        if self.quiet:
            return
        info = shown("  ".join(f"{k}={_fmt(v)}" for k, v in event.fields.items()))
        if event.kind == "start":
            progress = self._ensure_progress(event.unit)
            self._tasks[event.task] = progress.add_task(shown(event.task), total=event.total, info=info)
            return
        task_id = self._tasks.get(event.task)
        if task_id is None or self._progress is None:
            return
        fields: dict[str, Any] = {"info": info} if info else {}
        if event.kind == "advance":
            self._progress.update(task_id, advance=event.amount, **fields)
        elif event.kind == "finish":
            task = next(t for t in self._progress.tasks if t.id == task_id)
            self._progress.update(task_id, completed=task.total or task.completed, **fields)
            del self._tasks[event.task]
            if not self._tasks:
                self._progress.stop()
                self._progress = None
            else:  # an inner bar (a run's epoch under bench's overall bar) goes once done: no stacked bars
                self._progress.remove_task(task_id)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
