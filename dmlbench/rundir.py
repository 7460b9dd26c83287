"""RunDir: every path of the run-directory contract, and the manifest's life cycle.

`manifest.json` is written at the start (status running) and rewritten on finish, failure or
interruption; `status = complete` is the "done" marker and is written last.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dmlbench.errors import ConfigError, MissingInputError, RunIncompleteError
from dmlbench.utils.io import SCHEMA_VERSION, append_line, read_json, write_json_atomic, write_text_atomic

Status = Literal["running", "complete", "failed", "interrupted"]
STATUSES: tuple[str, ...] = ("running", "complete", "failed", "interrupted")


def now_iso() -> str:
    """UTC timestamp, second precision, ISO 8601."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class RunDir:
    """The folder of one run; all file names live here and nowhere else."""

    root: Path

    @property
    def run_id(self) -> str:
        """The folder name (the manifest records the same id)."""
        return self.root.name

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @property
    def train_dir(self) -> Path:
        return self.root / "train"

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

    def eval_dir(self, split: str) -> Path:
        """`eval/<split>/`, written by `evaluate`."""
        return self.root / "eval" / split

    def metrics_path(self, split: str) -> Path:
        return self.eval_dir(split) / "metrics.json"

    # -- state -----------------------------------------------------------------------------------

    def exists(self) -> bool:
        """True when the folder holds a run (its manifest), not merely exists."""
        return self.manifest_path.is_file()

    def is_empty(self) -> bool:
        return not self.root.exists() or not any(self.root.iterdir())

    def read_manifest(self) -> dict[str, Any]:
        """The manifest, schema-checked: RunIncompleteError when missing, MissingInputError when unreadable."""
        if not self.manifest_path.is_file():
            raise RunIncompleteError(
                f"{self.root} is not a run directory (no manifest.json)",
                hint="train one with `dmlbench train`, or check the path",
            )
        try:
            data = read_json(self.manifest_path)
        except ValueError as err:
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
        return data

    def status(self) -> str | None:
        """The manifest status, or None when there is no run here."""
        return self.read_manifest()["status"] if self.exists() else None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Write the whole manifest atomically (schema_version is added first)."""
        body = {k: v for k, v in manifest.items() if k != "schema_version"}
        if body.get("status") not in STATUSES:
            raise ValueError(f"bad status {body.get('status')!r}")
        write_json_atomic(self.manifest_path, body)

    def set_status(self, status: Status, *, error: str | None = None, **fields: Any) -> dict[str, Any]:
        """Move the manifest to `status` (finished time for terminal states); returns the new manifest."""
        manifest = self.read_manifest()
        manifest.update(fields)
        manifest["status"] = status
        manifest["error"] = error
        manifest["finished"] = None if status == "running" else now_iso()
        self.write_manifest(manifest)
        return manifest

    def require_complete(self) -> dict[str, Any]:
        """The manifest of a finished run; RunIncompleteError with a resume hint otherwise."""
        manifest = self.read_manifest()
        if manifest["status"] != "complete" or not self.model_path.is_file():
            raise RunIncompleteError(
                f"run {self.root} is {manifest['status']}, not complete",
                hint=f"finish it with `dmlbench train --run-dir {self.root} --resume`",
            )
        return manifest

    def write_config(self, text: str) -> None:
        write_text_atomic(self.config_path, text)

    def log(self, message: str) -> None:
        """One timestamped line in train/train.log."""
        append_line(self.log_path, f"{now_iso()} {message}")

    def check_reusable(self, *, same_config: bool, resume: bool, force: bool) -> None:
        """Refuse to overwrite a different run; explain how to resume or replace an unfinished one."""
        if force or not self.exists():
            if not force and not resume and not self.is_empty():
                raise ConfigError(
                    f"{self.root} exists and is not a dmlbench run directory",
                    hint="pick another --run-dir, or pass --force to use it anyway",
                )
            return
        status = self.read_manifest()["status"]
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
