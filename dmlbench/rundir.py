"""The run directory: every file name, every schema and every read/write of a run folder lives here.

A run folder holds exactly the files listed in `RUN_FILES` / `RUN_FOLDERS`; `--force` removes those and
nothing else. `manifest.json` is written at the start (status running) and rewritten on finish, failure
or interruption; `status = complete` is the "done" marker and is written last. One process at a time
writes a folder: `RunDir.claim()` takes an exclusive lock (`.lock`, flock) before anything is written.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dmlbench.errors import ConfigError, MissingInputError, RunIncompleteError, from_os_error
from dmlbench.utils.io import (
    SCHEMA_VERSION,
    append_line,
    read_json,
    refuse_links,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)
from dmlbench.utils.locks import exclusive_lock, lock_holder

if TYPE_CHECKING:
    from dmlbench.config import TrainConfig
    from dmlbench.datasets.prepared import PreparedDataset

Status = Literal["running", "complete", "failed", "interrupted"]
STATUSES: tuple[str, ...] = ("running", "complete", "failed", "interrupted")
# trained: an ordinary run; baseline: no training (raw pixels / untrained network); trial: one tuning trial
# (validation only, never a test evaluation); final: a tuned study's retraining on all training classes;
# ensemble: the K fold models of a study, their embeddings concatenated.
RunKind = Literal["trained", "baseline", "trial", "final", "ensemble"]

MANIFEST = "manifest.json"
CONFIG = "config.toml"
LOCK = ".lock"
TRAIN = "train"
EVAL = "eval"
TENSORBOARD = "tensorboard"
PLUGINS = "plugins"  # copies of the plugin files (a loss or backbone of your own) the run was trained with
METRICS = "metrics.json"
RETRIEVAL = "retrieval.json"  # eval/<split>/: a few queries and their nearest neighbours, for retrieval grids
# Everything a run may write, relative to its folder: `clear()` removes these and refuses anything else.
RUN_FILES = (MANIFEST, CONFIG)
TRAIN_FILES = ("last.pt", "last.pt.tmp", "model.pt", "best.pt", "history.jsonl", "train.log")
EVAL_FILES = (
    METRICS,
    RETRIEVAL,
    "embeddings.npy",
    "labels.npy",
    "gallery_embeddings.npy",
    "gallery_labels.npy",
)
SPLITS = ("test", "val")


def _owned_paths() -> tuple[str, ...]:
    """Every name a run writes, relative to its folder, each folder before what it holds."""
    names = [LOCK, *RUN_FILES, TRAIN, *(f"{TRAIN}/{name}" for name in TRAIN_FILES), TENSORBOARD, PLUGINS, EVAL]
    for split in SPLITS:
        names += [f"{EVAL}/{split}", *(f"{EVAL}/{split}/{name}" for name in EVAL_FILES)]
    return tuple(names)


# What `check_no_links` refuses to find as a link (tensorboard's event files and plugin copies are checked as found).
OWNED_PATHS = _owned_paths()


def now_iso() -> str:
    """UTC timestamp, second precision, ISO 8601."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


class _Record(BaseModel):
    # Unknown keys are kept, not rejected: a newer dmlbench may add fields an older report still reads.
    model_config = ConfigDict(extra="allow")


class DatasetRecord(_Record):
    """What the manifest records of the prepared dataset a run used."""

    name: str
    fingerprint: str | None = None
    protocol: str | None = None
    splits: dict[str, Any] | None = None
    train_test_disjoint: bool | None = None

    @classmethod
    def from_prepared(cls, prepared: PreparedDataset) -> DatasetRecord:
        """The record of `prepared` (its name, index fingerprint, protocol, splits): what every run kind stores."""
        info = prepared.info or {}
        return cls(
            name=prepared.name,
            fingerprint=prepared.fingerprint,
            protocol=info.get("protocol"),
            splits=info.get("splits"),
            train_test_disjoint=info.get("train_test_disjoint"),
        )


class PluginRecord(_Record):
    """A file plugin a run was trained with: the name as given, the file, its sha256 and the run's copy."""

    role: Literal["loss", "backbone"]
    name: str  # verbatim, as in config.toml: `./my_loss.py:MyLoss`
    path: str  # the file's absolute path when the run started
    sha256: str
    stored: str  # the copy inside the run folder, relative to it: plugins/<role>-<stem>-<sha256[:12]>.py


class Manifest(_Record):
    """`manifest.json`."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    kind: RunKind = "trained"
    status: Status
    created: str | None = None
    finished: str | None = None
    versions: dict[str, str | None] = Field(default_factory=dict)
    git_commit: str | None = None
    device: str | None = None
    world_size: int = 1
    threads: int | None = None  # torch intra-op threads per process (schedule.threads): part of the result
    dataset: DatasetRecord | None = None
    error: str | None = None
    last_step: int = 0
    last_epoch: int = 0
    # The held-out training classes of validation; evaluation reads this list instead of re-deriving it.
    val_classes: list[int] = Field(default_factory=list)
    baseline: str | None = None  # "raw" | "untrained" for kind == "baseline"
    study: str | None = None  # the tuning study a trial / final / ensemble run belongs to
    trial: int | None = None  # the trial number, for kind == "trial"
    fold: int | None = None  # the validation fold of a trial, when tuning with K folds
    tuned_params: dict[str, Any] | None = None  # the best parameters a final run was trained with
    tuning_trials: int | None = None  # how many finished trials chose those parameters
    plugins: list[PluginRecord] = Field(default_factory=list)  # file plugins (loss, backbone) and their sha256
    # `package.module:Attr` plugins: name -> distribution and version, or module file and sha256
    # (registry.module_plugin_versions)
    module_plugins: dict[str, dict[str, str]] = Field(default_factory=dict)


class MetricsRecord(_Record):
    """`eval/<split>/metrics.json`. `computed` maps each metric to when it was last computed."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    split: str
    metrics: dict[str, float]
    recall_k: list[int] = Field(default_factory=list)
    protocol: str | None = None
    n_queries: int | None = None
    n_gallery: int | None = None
    lone_queries: int | None = None
    embedding_dim: int | None = None
    distance: str | None = None
    backend: str | None = None
    kmeans_niter: int | None = None
    seconds: float | None = None
    metric_seconds: float | None = None
    dmlbench_version: str | None = None
    computed: dict[str, str] = Field(default_factory=dict)
    # Evaluation beyond exact search (docs/metrics.md): 95% intervals of metrics estimated from a query
    # sample, and what was approximated (query sample, approximate index, k-means sample). Empty: exact.
    intervals: dict[str, list[float]] = Field(default_factory=dict)
    approximation: dict[str, Any] = Field(default_factory=dict)


class RetrievedItem(_Record):
    """One image of a retrieval grid: its prepared-dataset path (relative to the dataset folder) and label."""

    path: str
    label: int
    correct: bool | None = None  # neighbours only: shares the query's class


class RetrievedQuery(_Record):
    """A query of the retrieval sample and its nearest neighbours, nearest first."""

    kind: Literal["worst", "random"]
    query: RetrievedItem
    neighbours: list[RetrievedItem]


class RetrievalRecord(_Record):
    """`eval/<split>/retrieval.json`: the worst queries first, then a seeded random sample."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    split: str
    dataset: str
    dataset_root: str | None = None  # where the images were when evaluated; reports look in the data root first
    k: int
    queries: list[RetrievedQuery] = Field(default_factory=list)


_EvalRecord = TypeVar("_EvalRecord", MetricsRecord, RetrievalRecord)


class StepRow(BaseModel):
    """One optimizer step in `train/history.jsonl`."""

    model_config = ConfigDict(extra="allow")

    step: int
    epoch: int
    loss: float
    lr: float | None = None
    images_per_s: float | None = None
    seconds: float = 0.0


class ValRow(BaseModel):
    """One validation pass in `train/history.jsonl`."""

    model_config = ConfigDict(extra="allow")

    epoch: int
    val: dict[str, float]


HistoryRow = StepRow | ValRow


@dataclass(frozen=True)
class History:
    """The rows of one run's history, in file order."""

    steps: list[StepRow]
    validations: list[ValRow]

    def last_loss(self) -> float | None:
        return self.steps[-1].loss if self.steps else None


def _parse_history_row(row: Mapping[str, Any]) -> HistoryRow | None:
    try:
        if "step" in row:
            return StepRow.model_validate(row)
        if "val" in row:
            return ValRow.model_validate(row)
    except ValidationError:
        return None
    return None


@dataclass(frozen=True)
class RunDir:
    """The folder of one run; all file names live here and nowhere else."""

    root: Path

    def __init__(self, root: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def run_id(self) -> str:
        """The folder name (the manifest records the same id)."""
        return self.root.name

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK

    @property
    def train_dir(self) -> Path:
        return self.root / TRAIN

    @property
    def tensorboard_dir(self) -> Path:
        return self.root / TENSORBOARD

    @property
    def last_checkpoint(self) -> Path:
        return self.train_dir / "last.pt"

    @property
    def model_path(self) -> Path:
        return self.train_dir / "model.pt"

    @property
    def best_path(self) -> Path:
        return self.train_dir / "best.pt"

    @property
    def history_path(self) -> Path:
        return self.train_dir / "history.jsonl"

    @property
    def log_path(self) -> Path:
        return self.train_dir / "train.log"

    def plugin_copy(self, role: str, source: Path, sha256: str) -> Path:
        """Where the run keeps its copy of a plugin file (named by role, file stem and content)."""
        return self.root / PLUGINS / f"{role}-{source.stem}-{sha256[:12]}.py"

    def write_plugin_copy(
        self, role: Literal["loss", "backbone"], name: str, source: Path, data: bytes
    ) -> PluginRecord:
        """Copy a plugin file's bytes into the run folder (atomically) and return its manifest record."""
        import hashlib

        sha256 = hashlib.sha256(data).hexdigest()
        target = self.plugin_copy(role, source, sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(target, data)
        return PluginRecord(
            role=role,
            name=name,
            path=str(source),
            sha256=sha256,
            stored=target.relative_to(self.root).as_posix(),
        )

    def stored_plugin_name(self, name: str) -> str:
        """`name` pointed at the run's own copy when it is a file plugin the run recorded: the trained model
        is rebuilt from the exact version it was trained with, from any working directory."""
        from dmlbench.registry import parse_plugin_name

        plugin = parse_plugin_name(name)
        if plugin is None or plugin.kind != "file" or not self.manifest_path.is_file():
            return name
        for record in self.read_manifest().plugins:
            stored = self.root / record.stored
            if record.name == name and stored.is_file():
                return f"{stored.resolve()}:{plugin.attr}"
        return name

    def eval_dir(self, split: str) -> Path:
        """`eval/<split>/`, written by `evaluate`."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}")
        return self.root / EVAL / split

    def metrics_path(self, split: str) -> Path:
        return self.eval_dir(split) / METRICS

    def retrieval_path(self, split: str) -> Path:
        return self.eval_dir(split) / RETRIEVAL

    def embeddings_path(self, split: str, *, gallery: bool = False) -> Path:
        return self.eval_dir(split) / ("gallery_embeddings.npy" if gallery else "embeddings.npy")

    def labels_path(self, split: str, *, gallery: bool = False) -> Path:
        return self.eval_dir(split) / ("gallery_labels.npy" if gallery else "labels.npy")

    # -- manifest --------------------------------------------------------------------------------

    def exists(self) -> bool:
        """True when the folder holds a run (its manifest), not merely exists."""
        return self.manifest_path.is_file()

    def is_empty(self) -> bool:
        """Nothing but (at most) our own lock file."""
        if not self.root.is_dir():
            return True
        return all(child.name == LOCK for child in self.root.iterdir())

    def read_manifest(self) -> Manifest:
        """The manifest, schema-checked: RunIncompleteError when missing, MissingInputError when unreadable."""
        if not self.manifest_path.is_file():
            raise RunIncompleteError(
                f"{self.root} is not a run directory (no {MANIFEST})",
                hint="train one with `dmlbench train`, or check the path",
            )
        try:
            data = read_json(self.manifest_path)
        except (ValueError, OSError) as err:
            raise MissingInputError(
                str(err), hint=f"the run is damaged; retrain with --run-dir {self.root} --force"
            ) from None
        version = data.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise MissingInputError(
                f"{self.manifest_path} has schema_version {version!r}; this dmlbench reads <= {SCHEMA_VERSION}",
                hint="upgrade dmlbench to read this run",
            )
        if data.get("status") not in STATUSES:
            raise MissingInputError(f"{self.manifest_path} has unknown status {data.get('status')!r}", hint="retrain")
        try:
            return Manifest.model_validate(data)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise MissingInputError(
                f"{self.manifest_path}: {where}: {first['msg']}", hint="the run is damaged; retrain it with --force"
            ) from None

    def status(self) -> Status | None:
        """The manifest status, or None when there is no run here."""
        return self.read_manifest().status if self.exists() else None

    def write_manifest(self, manifest: Manifest) -> None:
        """Write the whole manifest atomically."""
        write_json_atomic(self.manifest_path, manifest.model_dump(mode="json", exclude={"schema_version"}))

    def set_status(self, status: Status, *, error: str | None = None, **fields: Any) -> Manifest:
        """Move the manifest to `status` (finished time for terminal states); returns the new manifest."""
        manifest = self.read_manifest().model_copy(
            update={**fields, "status": status, "error": error, "finished": None if status == "running" else now_iso()}
        )
        self.write_manifest(manifest)
        return manifest

    def require_complete(self) -> Manifest:
        """The manifest of a finished run; RunIncompleteError with a resume hint otherwise."""
        manifest = self.read_manifest()
        # baselines have no trained weights, an ensemble's are its fold models'
        has_model = manifest.kind in ("baseline", "ensemble") or self.model_path.is_file()
        if manifest.status != "complete" or not has_model:
            raise RunIncompleteError(
                f"run {self.root} is {manifest.status}, not complete",
                hint=f"finish it with `dmlbench train --run-dir {self.root} --resume`",
            )
        return manifest

    # -- config ----------------------------------------------------------------------------------

    def write_config(self, text: str) -> None:
        write_text_atomic(self.config_path, text)

    def read_config(self) -> TrainConfig:
        """The run's resolved config (ConfigError / MissingInputError when damaged or missing)."""
        from dmlbench.config import load_config

        if not self.config_path.is_file():
            raise RunIncompleteError(f"{self.root} has no {CONFIG}", hint="the run is damaged; retrain it with --force")
        return load_config(self.config_path)

    # -- history ---------------------------------------------------------------------------------

    def start_history(self) -> None:
        write_text_atomic(self.history_path, "")

    def append_history(self, rows: list[dict[str, Any]]) -> None:
        """Append rows (each a StepRow or ValRow as a dict) in one fsynced write."""
        if rows:
            append_line(self.history_path, "\n".join(json.dumps(row) for row in rows))

    def _history_rows(self) -> list[HistoryRow]:
        try:
            data = self.history_path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as err:
            raise MissingInputError(
                f"cannot read {self.history_path}: {err.strerror or err}",
                hint=f"the run is damaged; retrain it with `dmlbench train --run-dir {self.root} --force`",
            ) from None
        rows: list[HistoryRow] = []
        # Line by line, bytes first: a line torn by a kill mid-write, or garbage in a copied folder (not
        # UTF-8, not JSON), is skipped on its own and never costs the rows around it.
        for line in data.splitlines():
            try:
                raw = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            row = _parse_history_row(raw) if isinstance(raw, dict) else None
            if row is not None:
                rows.append(row)
        return rows

    def read_history(self) -> History:
        """The history's rows; a line torn by a kill mid-write (or otherwise unreadable) is skipped.

        MissingInputError when the file exists but cannot be read at all (a folder, no permission).
        """
        rows = self._history_rows()
        return History(
            steps=[row for row in rows if isinstance(row, StepRow)],
            validations=[row for row in rows if isinstance(row, ValRow)],
        )

    def truncate_history(self, *, step: int, epoch: int) -> float:
        """Keep each row once, up to the checkpoint at (step, epoch); return the training seconds so far.

        Rows written after the last checkpoint are replayed by a resumed run, so they must go.
        """
        seen_steps: set[int] = set()
        seen_epochs: set[int] = set()
        kept: list[HistoryRow] = []
        for row in self._history_rows():
            if isinstance(row, StepRow) and row.step <= step and row.step not in seen_steps:
                seen_steps.add(row.step)
                kept.append(row)
            elif isinstance(row, ValRow) and row.epoch <= epoch and row.epoch not in seen_epochs:
                seen_epochs.add(row.epoch)
                kept.append(row)
        write_text_atomic(self.history_path, "".join(json.dumps(row.model_dump(mode="json")) + "\n" for row in kept))
        kept_steps = [row for row in kept if isinstance(row, StepRow)]
        return kept_steps[-1].seconds if kept_steps else 0.0

    def log(self, message: str) -> None:
        """One timestamped line in train/train.log."""
        append_line(self.log_path, f"{now_iso()} {message}")

    # -- evaluation ------------------------------------------------------------------------------

    def read_metrics(self, split: str = "test") -> MetricsRecord | None:
        """`eval/<split>/metrics.json`, or None when that split was not evaluated."""
        return self._read_eval_record(self.metrics_path(split), MetricsRecord, split)

    def write_metrics(self, record: MetricsRecord, *, merge: bool = True) -> MetricsRecord:
        """Write `eval/<split>/metrics.json`; with `merge`, metrics not recomputed now are kept, not lost."""
        stamp = now_iso()
        computed = dict.fromkeys(record.metrics, stamp)
        if merge:
            previous = self.read_metrics(record.split)
            # a metric subset keeps older values only when they were measured the same way
            same_protocol = (
                previous is not None
                and previous.distance == record.distance
                and previous.approximation == record.approximation
            )
            if previous is not None and same_protocol:
                kept = {k: v for k, v in previous.metrics.items() if k not in record.metrics}
                kept_computed = {k: previous.computed.get(k, "") for k in kept}
                kept_intervals = {k: v for k, v in previous.intervals.items() if k in kept}
                record = record.model_copy(
                    update={
                        "metrics": {**kept, **record.metrics},
                        "intervals": {**kept_intervals, **record.intervals},
                        "recall_k": sorted(set(previous.recall_k) | set(record.recall_k)),
                    }
                )
                computed = {**kept_computed, **computed}
        record = record.model_copy(update={"computed": computed})
        write_json_atomic(self.metrics_path(record.split), record.model_dump(mode="json", exclude={"schema_version"}))
        return record

    def write_retrieval(self, record: RetrievalRecord) -> None:
        """Write `eval/<split>/retrieval.json` atomically."""
        write_json_atomic(self.retrieval_path(record.split), record.model_dump(mode="json", exclude={"schema_version"}))

    def read_retrieval(self, split: str = "test") -> RetrievalRecord | None:
        """`eval/<split>/retrieval.json`, or None when missing; MissingInputError when unreadable."""
        return self._read_eval_record(self.retrieval_path(split), RetrievalRecord, split)

    def _read_eval_record(self, path: Path, model: type[_EvalRecord], split: str) -> _EvalRecord | None:
        """A record of `eval/<split>/`, or None when missing; MissingInputError (re-evaluate) when unreadable."""
        if not path.is_file():
            return None
        try:
            return model.model_validate(read_json(path))
        except (ValueError, OSError) as err:
            reason = err.errors()[0]["msg"] if isinstance(err, ValidationError) else str(err)
            raise MissingInputError(
                f"{path} is unreadable: {reason}",
                hint=f"re-evaluate it with `dmlbench evaluate {self.root} --split {split}`",
            ) from None

    # -- ownership -------------------------------------------------------------------------------

    def check_no_links(self) -> None:
        """ConfigError naming the first link planted at a name this run writes (a copied folder is untrusted).

        Every writer claims the folder first, and `claim` calls this before it opens anything, so nothing
        is ever written, truncated or removed through a link. The folder itself may be a link: the user
        named it.
        """
        refuse_links(self.root, OWNED_PATHS)
        for owned_dir in (self.tensorboard_dir, self.root / PLUGINS):  # their file names vary: check as found
            if owned_dir.is_dir():
                for folder, dirs, files in os.walk(owned_dir):  # os.walk never descends into links
                    refuse_links(Path(folder), [*dirs, *files])

    def foreign_entries(self) -> list[Path]:
        """Files or folders here that no run writes (what `--force` must never delete); links count as foreign."""
        if not self.root.is_dir():
            return []

        def own_file(path: Path) -> bool:
            return path.is_file() and not path.is_symlink()

        def own_dir(path: Path) -> bool:
            return path.is_dir() and not path.is_symlink()

        foreign: list[Path] = []
        for child in self.root.iterdir():
            if child.name in (*RUN_FILES, LOCK) and own_file(child):
                continue
            if child.name == TRAIN and own_dir(child):
                foreign += [p for p in child.iterdir() if p.name not in TRAIN_FILES or not own_file(p)]
            elif child.name == EVAL and own_dir(child):
                for split_dir in child.iterdir():
                    if split_dir.name not in SPLITS or not own_dir(split_dir):
                        foreign.append(split_dir)
                        continue
                    foreign += [p for p in split_dir.iterdir() if p.name not in EVAL_FILES or not own_file(p)]
            elif child.name == PLUGINS and own_dir(child):
                foreign += [p for p in child.iterdir() if p.suffix != ".py" or not own_file(p)]
            elif child.name == TENSORBOARD and own_dir(child):
                foreign += [
                    p
                    for p in child.rglob("*")
                    if p.is_symlink() or (p.is_file() and not p.name.startswith("events.out."))
                ]
            else:
                foreign.append(child)
        return sorted(foreign)

    def clear(self) -> None:
        """--force: remove the files a run writes; refuse (and remove nothing) if the folder holds others.

        Everything is checked before anything is removed: a planted link or a foreign file leaves the
        folder exactly as it was.
        """
        self.check_no_links()
        foreign = self.foreign_entries()
        if foreign:
            shown = ", ".join(str(p.relative_to(self.root)) for p in foreign[:3])
            more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
            raise ConfigError(
                f"{self.root} holds files dmlbench did not write ({shown}{more}); --force removes only a run's files",
                hint="move those files away, or pick another --run-dir",
            )
        for name in RUN_FILES:
            (self.root / name).unlink(missing_ok=True)
        for folder in (self.train_dir, self.root / EVAL, self.tensorboard_dir, self.root / PLUGINS):
            if folder.is_dir():
                shutil.rmtree(folder)

    @contextlib.contextmanager
    def claim(self, *, holder: str = "train") -> Iterator[None]:
        """Hold the folder's exclusive write lock for the block; a second writer gets an error naming us.

        A lock left by a dead process is taken over (utils/locks.py). The lock file stays (removing it
        would race with a waiting writer), except in a folder this claim created and left otherwise empty.
        """
        created = not self.root.exists()
        lock_existed = self.lock_path.exists()
        if self.root.is_dir():
            self.check_no_links()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            lock = exclusive_lock(self.lock_path, holder=holder, what=str(self.root))
            lock.__enter__()
        except (FileExistsError, NotADirectoryError):
            raise ConfigError(
                f"{self.root} is a file or inside one, not a run folder", hint="pick another --run-dir / --runs-root"
            ) from None
        except OSError as err:
            raise from_os_error(err, doing=f"cannot write the run folder {self.root}") from None
        try:
            yield
        finally:
            lock.__exit__(None, None, None)
            # A claim that ended without a run here leaves no trace of itself.
            if not lock_existed and not self.exists():
                self.lock_path.unlink(missing_ok=True)
            if created and self.is_empty():
                with contextlib.suppress(OSError):
                    self.root.rmdir()

    def holder(self) -> str | None:
        """Who holds the write lock now ("train pid N on host"), or None when nobody does."""
        return lock_holder(self.lock_path)

    # -- reuse -----------------------------------------------------------------------------------

    def check_reusable(self, *, same_config: bool, resume: bool, force: bool) -> None:
        """Refuse to overwrite a different run; explain how to resume or replace an unfinished one.

        A link planted in the folder is refused first, whatever the flags (before any work starts).
        """
        if self.root.is_dir():
            self.check_no_links()
        if force:
            foreign = self.foreign_entries()
            if foreign:
                self.clear()  # raises, naming the foreign files, before any work starts
            return
        if not self.exists():
            if resume:
                raise MissingInputError(
                    f"nothing to resume: {self.root} holds no run", hint="drop --resume to start it"
                )
            if not self.is_empty():
                hint = "pick another --run-dir"
                if not self.foreign_entries():
                    hint += ", or pass --force to remove its partial run files"
                raise ConfigError(f"{self.root} exists and is not a dmlbench run directory", hint=hint)
            return
        status = self.read_manifest().status
        if not same_config:
            raise ConfigError(
                f"{self.root} already holds a different run ({status})",
                hint="pass --force to replace it, or choose another --run-dir / --set run_id=...",
            )
        if resume:
            return
        if status == "complete":
            raise ConfigError(
                f"{self.root} already holds this run, complete",
                hint="nothing to do; pass --force to train it again",
            )
        raise ConfigError(
            f"{self.root} holds this run, {status}",
            hint=f"continue it with `dmlbench train --run-dir {self.root} --resume`, or start over with --force",
        )


def find_runs(root: str | os.PathLike[str]) -> list[RunDir]:
    """Every run folder at or below `root` (a folder holding a manifest), each once, hidden folders skipped."""
    base = Path(root)
    if (base / MANIFEST).is_file():
        return [RunDir(base)]
    found: dict[Path, RunDir] = {}
    for manifest in sorted(base.rglob(MANIFEST)):
        relative = manifest.relative_to(base)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if manifest.is_symlink() or manifest.parent.is_symlink():
            continue  # a link could lead outside the folder the user named
        found.setdefault(manifest.parent.resolve(), RunDir(manifest.parent))
    return list(found.values())
