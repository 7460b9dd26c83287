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

from dmlbench.errors import ConfigError, EnvironmentFailure
from dmlbench.rundir import STUDIES_JOURNAL, RunDir

logger = logging.getLogger(__name__)

JOURNAL = STUDIES_JOURNAL
ASK_LOCK = ".ask.lock"
RDB_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg2", "postgresql+psycopg", "mysql", "mysql+pymysql")
OWNER_ATTR = "dmlbench_owner"
RUN_DIR_ATTR = "dmlbench_run_dir"


def default_storage(runs_root: Path) -> str:
    """The journal file every study under `runs_root` shares."""
    return str(runs_root / JOURNAL)


def redact(url: str) -> str:
    """`url` without its password (study.json and logs may be shared)."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def open_storage(spec: str) -> Any:
    """An Optuna storage for `spec`: an RDB URL (sqlite:///..., postgresql://...) or a journal file path.

    Opening it writes nothing but the storage itself; any failure is one line.
    """
    import optuna
    from optuna.storages.journal import JournalFileBackend

    scheme, sep, _ = spec.partition("://")
    if sep:
        if scheme not in RDB_SCHEMES:
            raise ConfigError(
                f"--storage {redact(spec)!r}: unknown scheme {scheme!r}",
                hint="use sqlite:///path.db, postgresql://user@host/db, or a journal file path",
            )
        if scheme == "sqlite":
            # SQLAlchemy would create the file's folder-less path lazily and fail later; check now.
            target = Path(spec.split("sqlite:///", 1)[-1])
            if spec.startswith("sqlite:///") and not target.parent.is_dir():
                raise EnvironmentFailure(
                    f"--storage {spec}: folder {target.parent} does not exist", hint="create it, or pick another path"
                )
        try:
            return optuna.storages.RDBStorage(spec)
        except Exception as err:  # noqa: BLE001 - drivers raise anything from ImportError to OperationalError
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise EnvironmentFailure(
                f"cannot open --storage {redact(spec)}: {reason}",
                hint="check the URL, that the database server runs, and that its driver is installed",
            ) from None
    path = Path(spec)
    if path.is_dir():
        raise ConfigError(f"--storage {spec} is a folder", hint=f"name a file, e.g. {path / JOURNAL}")
    if not path.parent.is_dir():
        raise EnvironmentFailure(f"--storage {spec}: folder {path.parent} does not exist", hint="create it first")
    try:
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    except OSError as err:
        raise EnvironmentFailure(f"cannot open --storage {spec}: {err.strerror}", hint="check the path") from None


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
