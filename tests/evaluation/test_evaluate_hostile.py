"""`dmlbench evaluate` under hostile and careless use: one `error:` + `hint:` line, the README's exit codes,
no traceback, and the run folder left exactly as it was."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from dmlbench.cli import app
from dmlbench.rundir import LOCK, RunDir

runner = CliRunner()


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under `root` (the lock file aside) with a digest of its bytes."""
    if not root.exists():
        return {}
    if root.is_file():
        return {".": hashlib.sha256(root.read_bytes()).hexdigest()}
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if path.name == LOCK:
            continue
        key = str(path.relative_to(root))
        found[key] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return found


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make `path` unwritable even for root (immutable flag), or by mode bits for other users."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)], check=False).returncode:
        pytest.skip("running as root without chattr +i: cannot make a folder read-only")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.fixture
def case(tmp_path: Path, data_root: Path, evaluated_run: Path) -> dict[str, Path]:
    # evaluated once already, so a failing command could damage results that exist
    run = tmp_path / evaluated_run.name
    shutil.copytree(evaluated_run, run)
    (tmp_path / "afile").write_text("not a run")
    return {"run": run, "data": data_root, "tmp": tmp_path}


def _setup_damaged_data(c: dict[str, Path]) -> None:
    shutil.copytree(c["data"] / "digits", c["tmp"] / "bad-data" / "digits")
    (c["tmp"] / "bad-data" / "digits" / "images.npy").write_bytes(b"\x93NUMPY truncated")


def _forged_npy(shape: tuple[int, ...], descr: str) -> bytes:
    """A well-formed .npy header declaring `shape`, followed by a few bytes only."""
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + bytes(64)


def _setup_forged_images(c: dict[str, Path]) -> None:
    shutil.copytree(c["data"] / "digits", c["tmp"] / "bad-data" / "digits")
    (c["tmp"] / "bad-data" / "digits" / "images.npy").write_bytes(_forged_npy((10**8, 8, 8), "|u1"))


def _setup_forged_embeddings(c: dict[str, Path]) -> None:
    import zipfile

    (c["tmp"] / "forged.npy").write_bytes(_forged_npy((10**12, 512), "<f4"))
    np.save(c["tmp"] / "labels.npy", np.arange(10))
    with zipfile.ZipFile(c["tmp"] / "forged.npz", "w") as archive:
        archive.writestr("embeddings.npy", _forged_npy((10, 4), "<f4")[:-64] + bytes(160))
        archive.writestr("labels.npy", _forged_npy((10**10,), "<i8"))


def _edit_config(c: dict[str, Path], old: str, new: str) -> None:
    path = c["run"] / "config.toml"
    path.write_text(path.read_text().replace(old, new))


Setup = Callable[[dict[str, Path]], Any]
CASES: list[tuple[str, Setup | None, list[str], int, str]] = [
    ("run dir is a file", None, ["{tmp}/afile"], 2, "is a file, not a run directory"),
    ("run dir missing", None, ["{tmp}/nope"], 3, "does not exist"),
    ("folder that is no run", lambda c: (c["tmp"] / "empty").mkdir(), ["{tmp}/empty"], 3, "not a run directory"),
    ("unknown split", None, ["{run}", "--split", "train"], 2, "unknown split"),
    ("recall@0", None, ["{run}", "--recall-k", "0,1"], 2, "K >= 1"),
    ("K beyond the gallery", None, ["{run}", "--recall-k", "1,100000"], 2, "more neighbours than"),
    ("recall-k not numbers", None, ["{run}", "--recall-k", "1,x"], 2, "not a list of integers"),
    ("k-means iterations 0", None, ["{run}", "--kmeans-niter", "0"], 2, "k-means needs niter >= 1"),
    ("unknown metric", None, ["{run}", "--metrics", "recal,nmi"], 2, "unknown metric"),
    ("unknown device", None, ["{run}", "--device", "tpu"], 2, "unknown device"),
    (
        "embeddings path is a folder",
        None,
        ["--embeddings", "{tmp}", "--labels", "{tmp}/afile"],
        2,
        "is a folder, not an array file",
    ),
    ("run still running", lambda c: RunDir(c["run"]).set_status("running"), ["{run}"], 3, "running, not complete"),
    ("manifest not JSON", lambda c: (c["run"] / "manifest.json").write_text("{"), ["{run}"], 3, "not valid JSON"),
    (
        "manifest binary",
        lambda c: (c["run"] / "manifest.json").write_bytes(b"\xff\xfe\x00garbage"),
        ["{run}"],
        3,
        "not UTF-8 JSON",
    ),
    (
        "config binary",
        lambda c: (c["run"] / "config.toml").write_bytes(b"\xff\xfe\x00"),
        ["{run}"],
        2,
        "not a text file",
    ),
    ("config not TOML", lambda c: (c["run"] / "config.toml").write_text("[model\n"), ["{run}"], 2, "not valid TOML"),
    (
        "dataset name escaping the data root",
        lambda c: _edit_config(c, 'dataset = "digits"', 'dataset = "../../etc"'),
        ["{run}"],
        2,
        "not a plain name",
    ),
    (
        "model.pt corrupt",
        lambda c: (c["run"] / "train" / "model.pt").write_bytes(b"junk"),
        ["{run}"],
        3,
        "cannot load",
    ),
    (
        "metrics.json corrupt, subset asked",
        lambda c: (c["run"] / "eval" / "test" / "metrics.json").write_text("{"),
        ["{run}", "--metrics", "nmi"],
        3,
        "cannot be merged",
    ),
    ("prepared images corrupt", _setup_damaged_data, ["{run}", "--data-root", "{tmp}/bad-data"], 3, "images.npy"),
    (
        "prepared images declare a huge shape",
        _setup_forged_images,
        ["{run}", "--data-root", "{tmp}/bad-data"],
        3,
        "declares a 100000000x8x8 uint8 array",
    ),
    (
        "embeddings declare a huge shape",
        _setup_forged_embeddings,
        ["--embeddings", "{tmp}/forged.npy", "--labels", "{tmp}/labels.npy"],
        3,
        "declares a 1000000000000x512 float32 array",
    ),
    (
        "labels declare a huge shape",
        _setup_forged_embeddings,
        ["--embeddings", "{tmp}/labels.npy", "--labels", "{tmp}/forged.npy"],
        3,
        "forged.npy: its header declares",
    ),
    (
        "npz member declares a huge shape",
        _setup_forged_embeddings,
        ["--embeddings", "{tmp}/forged.npz"],
        3,
        "member labels.npy",
    ),
    ("data root is a file", None, ["{run}", "--data-root", "{tmp}/afile"], 2, "is a file or inside one"),
    (
        "embeddings output is a folder",
        lambda c: (c["run"] / "eval" / "test" / "embeddings.npy").mkdir(),
        ["{run}", "--save-embeddings"],
        2,
        "a folder where a file belongs",
    ),
    (
        "metrics output is a folder",
        lambda c: shutil.rmtree(c["run"] / "eval") or (c["run"] / "eval" / "test" / "metrics.json").mkdir(parents=True),
        ["{run}"],
        2,
        "a folder where a file belongs",
    ),
    (
        "eval folder is a file",
        lambda c: shutil.rmtree(c["run"] / "eval") or (c["run"] / "eval").write_text("x"),
        ["{run}"],
        2,
        "a file where a folder belongs",
    ),
    ("baseline without dataset", None, ["--baseline", "raw"], 2, "needs --dataset"),
    ("baseline unknown", None, ["--baseline", "rwa", "--dataset", "digits"], 2, "did you mean 'raw'"),
    ("baseline negative seed", None, ["--baseline", "raw", "--dataset", "digits", "--seed", "-3"], 2, "non-negative"),
    ("baseline unprepared", None, ["--baseline", "raw", "--dataset", "cub200"], 3, "dmlbench prepare cub200"),
    ("baseline unknown dataset", None, ["--baseline", "raw", "--dataset", "digitz"], 2, "did you mean 'digits'"),
    (
        "baseline runs root is a file",
        None,
        ["--baseline", "raw", "--dataset", "digits", "--runs-root", "{tmp}/afile"],
        2,
        "is a file or inside one",
    ),
]


@pytest.mark.parametrize(("setup", "args", "code", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_case(
    case: dict[str, Path], setup: Setup | None, args: list[str], code: int, message: str, data_root: Path
) -> None:
    if setup is not None:
        setup(case)
    before_run, before_tmp = snapshot(case["run"]), snapshot(case["tmp"])
    argv = [a.format(**{k: str(v) for k, v in case.items()}) for a in args]
    if "--data-root" not in argv:
        argv += ["--data-root", str(data_root)]
    if "--baseline" in argv and "--runs-root" not in argv:
        argv += ["--runs-root", str(case["tmp"] / "runs")]
    result = runner.invoke(
        app, ["evaluate", *argv, "--device", "cpu"] if "--device" not in argv else ["evaluate", *argv]
    )
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    assert message in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-2].startswith("error:") and lines[-1].startswith("hint:"), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert snapshot(case["run"]) == before_run  # nothing of the run changed, nothing half-written
    assert snapshot(case["tmp"]) == before_tmp  # nor anything beside it (no baseline folder, no stray file)


# One command per mode now: a flag of another mode is no option of the command (the parser's usage error).
MIXED = [
    ("baseline flag on a run", ["{run}", "--seed", "1"], "No such option: --seed"),
    ("labels without embeddings", ["{run}", "--labels", "{tmp}/afile"], "No such option: --labels"),
    ("baseline and a run", ["{run}", "--baseline", "raw", "--dataset", "digits"], "unexpected extra argument"),
    ("baseline with a subset", ["--baseline", "raw", "--dataset", "digits", "--metrics", "nmi"], "--metrics"),
]


@pytest.mark.parametrize(("args", "message"), [c[1:] for c in MIXED], ids=[c[0] for c in MIXED])
def test_a_flag_of_another_mode_is_refused(case: dict[str, Path], args: list[str], message: str) -> None:
    before_run, before_tmp = snapshot(case["run"]), snapshot(case["tmp"])
    argv = [a.format(**{k: str(v) for k, v in case.items()}) for a in args]
    result = runner.invoke(app, ["evaluate", *argv, "--runs-root", str(case["tmp"] / "runs")])
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert snapshot(case["run"]) == before_run and snapshot(case["tmp"]) == before_tmp


def test_a_folder_in_use_is_refused_naming_the_holder(case: dict[str, Path]) -> None:
    with RunDir(case["run"]).claim(holder="train"):
        result = runner.invoke(app, ["evaluate", str(case["run"]), "--data-root", str(case["data"]), "--device", "cpu"])
    assert result.exit_code == 2 and f"in use by train pid {os.getpid()}" in result.stderr
    assert "hint:" in result.stderr and "Traceback" not in result.stderr


def test_read_only_eval_folder(case: dict[str, Path]) -> None:
    before = snapshot(case["run"])
    with read_only(case["run"] / "eval" / "test"):
        result = runner.invoke(app, ["evaluate", str(case["run"]), "--data-root", str(case["data"]), "--device", "cpu"])
    assert result.exit_code == 4, result.stderr
    assert "error: cannot write" in result.stderr and "hint:" in result.stderr and "Traceback" not in result.stderr
    assert snapshot(case["run"]) == before


def test_read_only_runs_root_for_a_baseline(case: dict[str, Path]) -> None:
    root = case["tmp"] / "ro-runs"
    root.mkdir()
    with read_only(root):
        result = runner.invoke(
            app,
            ["evaluate", "--baseline", "raw", "--dataset", "digits", "--runs-root", str(root)]
            + ["--data-root", str(case["data"]), "--device", "cpu"],
        )
    assert result.exit_code == 4, result.stderr
    assert "error: cannot write" in result.stderr and "hint:" in result.stderr and "Traceback" not in result.stderr
    assert list(root.iterdir()) == []


def test_a_full_disk_is_one_error_line(case: dict[str, Path]) -> None:
    """A file-size limit makes the OS refuse the write (EFBIG), as a full disk does (ENOSPC)."""
    before = snapshot(case["run"])
    limit = 16 * 1024  # metrics.json fits, the embeddings (896 x 16 float32 = 57 KB) do not

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    argv = [sys.executable, "-m", "dmlbench", "evaluate", str(case["run"]), "--save-embeddings"]
    argv += ["--data-root", str(case["data"]), "--device", "cpu"]
    result = subprocess.run(argv, capture_output=True, text=True, preexec_fn=limit_file_size, env=env, check=False)
    assert result.returncode == 4, result.stderr
    assert "error: cannot write" in result.stderr and "embeddings.npy" in result.stderr
    assert "hint: free disk space" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert snapshot(case["run"]) == before
    assert not list((case["run"] / "eval" / "test").glob(".*.tmp"))  # the partial write was cleaned up


def test_metric_subset_merges_into_stored_metrics(case: dict[str, Path]) -> None:
    run = RunDir(case["run"])
    first = run.read_metrics("test")
    assert first is not None and "recall@1" in first.metrics
    result = runner.invoke(
        app, ["evaluate", str(case["run"]), "--metrics", "nmi", "--data-root", str(case["data"]), "--json"]
    )
    assert result.exit_code == 0, result.stderr
    assert list(json.loads(result.stdout)["metrics"]) == ["nmi"]  # what was computed now
    merged = run.read_metrics("test")
    assert merged is not None
    assert merged.metrics == pytest.approx(first.metrics)  # recall & co survive; nmi recomputed (same seed)
    assert set(merged.metrics) == set(first.metrics) and merged.recall_k == first.recall_k
    assert merged.computed["recall@1"] == first.computed["recall@1"]
    assert merged.computed["nmi"] >= first.computed["nmi"]


def test_a_corrupt_metrics_file_is_rewritten_by_a_full_evaluation(case: dict[str, Path]) -> None:
    path = case["run"] / "eval" / "test" / "metrics.json"
    path.write_text("{")
    result = runner.invoke(app, ["evaluate", str(case["run"]), "--data-root", str(case["data"]), "--device", "cpu"])
    assert result.exit_code == 0, result.stderr
    assert set(json.loads(path.read_text())["metrics"]) >= {"recall@1", "nmi", "map@r"}
    assert np.isfinite(json.loads(path.read_text())["metrics"]["nmi"])
