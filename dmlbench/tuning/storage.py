"""The Optuna storage of a study, the study-wide ask lock, and stale trials left RUNNING by dead workers.

Journal file storage (the default) has no heartbeat, so each trial records its owner (host, pid, the
process's start time) in its user attributes; a RUNNING trial whose owner is gone is marked FAIL and
its parameters are enqueued again, so it is re-run as a new trial and never counted.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dmlbench.errors import ConfigError, EnvironmentFailure, file_kind, first_line
from dmlbench.rundir import RunDir
from dmlbench.runsroot import STUDIES_JOURNAL
from dmlbench.utils.redact import redact

logger = logging.getLogger(__name__)

JOURNAL = STUDIES_JOURNAL
ASK_LOCK = ".ask.lock"
RDB_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg2", "postgresql+psycopg", "mysql", "mysql+pymysql")
OWNER_ATTR = "dmlbench_owner"
RUN_DIR_ATTR = "dmlbench_run_dir"


def default_storage(runs_root: Path) -> str:
    """The journal file every study under `runs_root` shares."""
    return str(runs_root / JOURNAL)


# libpq's keyword/value form (`host=... password=...`): not a path, and not something Optuna can open.
_LIBPQ_DSN = re.compile(r"(?:^|\s)(?:host|hostaddr|dbname|user|password|port)\s*=", re.IGNORECASE)


def check_storage_spec(spec: str) -> None:
    """Refuse a libpq keyword/value connection string: as a path it would become a journal file named after it."""
    if "://" not in spec and _LIBPQ_DSN.search(spec):
        raise ConfigError(
            f"--storage {redact(spec)!r} is a libpq connection string, not a URL or a journal file",
            hint="write it as a URL: postgresql://USER:PASSWORD@HOST:PORT/DBNAME",
        )


def open_storage(spec: str) -> Any:
    """An Optuna storage for `spec`: an RDB URL (sqlite:///..., postgresql://...) or a journal file path.

    Opening it writes nothing but the storage itself; any failure is one line.
    """
    import optuna
    from optuna.storages.journal import JournalFileBackend

    check_storage_spec(spec)
    shown = redact(spec)
    scheme, sep, _ = spec.partition("://")
    if sep:
        if scheme not in RDB_SCHEMES:
            raise ConfigError(
                f"--storage {shown!r}: unknown scheme {redact(scheme)!r}",
                hint="use sqlite:///path.db, postgresql://user@host/db, or a journal file path",
            )
        if scheme == "sqlite":
            # SQLAlchemy would create the file's folder-less path lazily and fail later; check now.
            target = Path(spec.split("sqlite:///", 1)[-1].split("?", 1)[0])  # `?...` are driver arguments
            if spec.startswith("sqlite:///") and not target.parent.is_dir():
                raise EnvironmentFailure(
                    f"--storage {shown}: folder {redact(str(target.parent))} does not exist",
                    hint="create it, or pick another path",
                )
        try:
            return optuna.storages.RDBStorage(spec)
        except Exception as err:  # noqa: BLE001 - drivers raise anything from ImportError to OperationalError
            raise EnvironmentFailure(
                f"cannot open --storage {shown}: {redact(first_line(err), known=[spec])}",
                hint="check the URL, that the database server runs, and that its driver is installed",
            ) from None
    path = Path(spec)
    kind = file_kind(path)
    if kind is not None:
        raise ConfigError(
            f"--storage {shown} is {kind}", hint=f"name a journal file, e.g. {redact(str(path / JOURNAL))}"
        )
    if not path.parent.is_dir():
        raise EnvironmentFailure(
            f"--storage {shown}: folder {redact(str(path.parent))} does not exist", hint="create it first"
        )
    check_journal(path)
    try:
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    except OSError as err:
        raise EnvironmentFailure(f"cannot open --storage {shown}: {err.strerror}", hint="check the path") from None


def check_journal(path: Path, *, writing: bool = True) -> None:
    """Refuse a journal with a torn or garbage line, naming it and how to recover.

    Optuna appends after whatever the file ends with, so one torn line (a worker killed mid-write, a full
    disk) glues itself to the next record and every later read fails. A writer checks under Optuna's own
    journal lock, so a record being written right now is not mistaken for a torn one; a reader (`report`)
    takes no lock and, as Optuna does, ignores a torn last line.
    """
    from optuna.storages.journal import JournalFileSymlinkLock

    if not path.is_file():
        return
    lock = JournalFileSymlinkLock(str(path)) if writing else None
    if lock is not None:
        lock.acquire()
    try:
        with path.open("rb") as handle:
            offset = 0
            for number, line in enumerate(handle, start=1):
                problem = _journal_line_problem(line, number, last_may_be_torn=not writing)
                if problem is not None:
                    raise ConfigError(
                        f"study journal {redact(str(path))} {problem} at byte {offset}; "
                        "Optuna cannot read the studies past it, and tune never appends after it",
                        hint=f"keep a copy, then cut the journal to its intact start: truncate -s {offset} {path} "
                        "(trials recorded after that point are lost and run again)",
                    )
                offset += len(line)
    finally:
        if lock is not None:
            lock.release()


def _journal_line_problem(line: bytes, number: int, *, last_may_be_torn: bool) -> str | None:
    import json

    if not line.endswith(b"\n"):
        return None if last_may_be_torn else f"ends in a torn line {number} (its write was cut short)"
    try:
        record = json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
        record = None
    return None if isinstance(record, dict) else f"has a garbage line {number}"


@contextlib.contextmanager
def ask_lock(study_dir: Path) -> Iterator[None]:
    """The study's exclusive lock around "count the trials, then ask one": exactly N trials, whatever N workers.

    flock is released by the kernel when its holder dies, so a killed worker never blocks the others.
    """
    study_dir.mkdir(parents=True, exist_ok=True)
    with (study_dir / ASK_LOCK).open("a+", encoding="utf-8") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (field 22 of /proc/<pid>/stat): tells a live pid from a reused one."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None
    fields = text.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def owner_record() -> dict[str, Any]:
    """Who runs a trial: stored in its user attributes when it is asked."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "started": _start_time(pid)}


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    now = _start_time(pid)
    return started is None or now is None or now == started


@dataclass(frozen=True)
class Staleness:
    stale: bool
    reason: str


def staleness(user_attrs: dict[str, Any]) -> Staleness:
    """Whether a RUNNING trial's owner is gone. Call it under the ask lock: owners are recorded under it."""
    owner = user_attrs.get(OWNER_ATTR)
    if not isinstance(owner, dict) or "pid" not in owner:
        return Staleness(True, "no owner recorded (its process died while asking)")
    if owner.get("host") == socket.gethostname():
        if _alive(int(owner["pid"]), owner.get("started")):
            return Staleness(False, "owner alive")
        return Staleness(True, f"owner pid {owner['pid']} is gone")
    # Another host: its pid means nothing here, but a live trainer holds its run folder's lock.
    run_dir = user_attrs.get(RUN_DIR_ATTR)
    if isinstance(run_dir, str):
        run = RunDir(run_dir)
        if run.exists() and run.holder() is None and run.status() != "complete":
            return Staleness(True, f"nobody holds {run_dir}")
    return Staleness(False, "owner on another host, run folder held or not started")


def mark_run_abandoned(run: RunDir) -> None:
    """A dead worker's run folder still says "running": record that it failed (if nobody holds it now)."""
    if not run.exists() or run.status() != "running":
        return
    try:
        with run.claim(holder="tune"):
            if run.status() == "running":
                run.set_status("failed", error="its worker died; the trial was re-asked as a new trial")
    except ConfigError:
        logger.debug("%s is held by a live process; left as it is", run.root)
