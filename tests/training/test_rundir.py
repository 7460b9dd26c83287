"""RunDir: manifest life cycle, schema checks, refusing to overwrite a different run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dmlbench.errors import ConfigError, MissingInputError, RunIncompleteError
from dmlbench.rundir import Manifest, RunDir


def _manifest(run: RunDir, status: str = "running") -> None:
    run.root.mkdir(parents=True, exist_ok=True)
    run.write_manifest(Manifest(run_id=run.run_id, status=status, created="t"))


def test_paths_follow_the_contract(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r1")
    assert run.manifest_path == tmp_path / "r1" / "manifest.json"
    assert run.config_path.name == "config.toml"
    assert run.last_checkpoint == tmp_path / "r1" / "train" / "last.pt"
    assert run.model_path == tmp_path / "r1" / "train" / "model.pt"
    assert run.history_path.name == "history.jsonl" and run.log_path.name == "train.log"
    assert run.metrics_path("test") == tmp_path / "r1" / "eval" / "test" / "metrics.json"


def test_status_transitions(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    assert run.status() is None
    _manifest(run)
    assert run.read_manifest().schema_version == 1
    manifest = run.set_status("failed", error="loss became nan at step 3", last_step=2)
    assert manifest.status == "failed" and manifest.finished and manifest.last_step == 2
    assert run.status() == "failed"
    with pytest.raises(RunIncompleteError, match="failed"):
        run.require_complete()
    run.set_status("complete")
    with pytest.raises(RunIncompleteError):  # complete but no model.pt is still not usable
        run.require_complete()


def test_newer_schema_and_garbage_are_rejected(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    run.root.mkdir()
    run.manifest_path.write_text(json.dumps({"schema_version": 99, "status": "complete"}))
    with pytest.raises(MissingInputError, match="schema_version"):
        run.read_manifest()
    run.manifest_path.write_text("{not json")
    with pytest.raises(MissingInputError):
        run.read_manifest()


def test_reuse_rules(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    run.check_reusable(same_config=True, resume=False, force=False)  # nothing there yet
    _manifest(run, "interrupted")
    with pytest.raises(ConfigError, match="different run"):
        run.check_reusable(same_config=False, resume=False, force=False)
    with pytest.raises(ConfigError) as unfinished:
        run.check_reusable(same_config=True, resume=False, force=False)
    assert "--resume" in (unfinished.value.hint or "")
    run.check_reusable(same_config=True, resume=True, force=False)
    run.check_reusable(same_config=False, resume=False, force=True)
    other = RunDir(tmp_path / "not-a-run")
    other.root.mkdir()
    (other.root / "thesis.tex").write_text("x")
    with pytest.raises(ConfigError, match="not a dmlbench run"):
        other.check_reusable(same_config=True, resume=False, force=False)
