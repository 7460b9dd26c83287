"""`dmlbench evaluate` through the real app: exit codes, error+hint on stderr, clean stdout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from dmlbench.cli import app
from dmlbench.evaluation import evaluate_embeddings

runner = CliRunner()
RNG = np.random.default_rng(0)
X = (np.repeat(RNG.normal(size=(6, 8)), 5, axis=0) + 0.8 * RNG.normal(size=(30, 8))).astype(np.float32)
Y = np.repeat(np.arange(6), 5)


def invoke(*args: str) -> Any:
    return runner.invoke(app, ["evaluate", *args])


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", Y)
    return tmp_path / "x.npy", tmp_path / "y.npy"


def test_external_embeddings_json_matches_the_python_api(files: tuple[Path, Path]) -> None:
    result = invoke(
        "--embeddings", str(files[0]), "--labels", str(files[1]), "--recall-k", "1,2,4", "--json", "--device", "cpu"
    )
    assert result.exit_code == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["metrics"] == pytest.approx(evaluate_embeddings(X, Y, recall_k=(1, 2, 4), device="cpu").metrics)
    assert body["n_queries"] == 30 and body["lone_queries"] == 0


def test_table_output_and_metric_subset(files: tuple[Path, Path], tmp_path: Path) -> None:
    np.savez(tmp_path / "both.npz", embeddings=X, labels=Y)
    result = invoke("--embeddings", str(tmp_path / "both.npz"), "--metrics", "recall,nmi", "--distance", "euclidean")
    assert result.exit_code == 0, result.stderr
    assert "recall@1" in result.stdout and "recall@8" in result.stdout and "nmi" in result.stdout
    assert "map@r" not in result.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--embeddings", "{x}"], 2, "no labels were given"),
        (["--embeddings", "{missing}", "--labels", "{y}"], 3, "does not exist"),
        (["--embeddings", "{x}", "--labels", "{y}", "--recall-k", "1,a"], 2, "not a list of integers"),
        (["--embeddings", "{x}", "--labels", "{y}", "--recall-k", "1,64"], 2, "recall@64"),
        (["--embeddings", "{x}", "--labels", "{y}", "--metrics", "recal"], 2, "unknown metric"),
        (["--embeddings", "{x}", "--labels", "{y}", "--distance", "l1"], 2, "unknown --distance"),
        (["{missing}"], 3, "does not exist"),
        (["--embeddings", "{nan}", "--labels", "{y}"], 2, "NaN or inf"),
    ],
)
def test_errors_exit_nonzero_with_hint(
    files: tuple[Path, Path], tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    bad = X.copy()
    bad[3, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    paths = {"x": files[0], "y": files[1], "missing": tmp_path / "missing.npy", "nan": tmp_path / "nan.npy"}
    result = invoke(*(a.format(**paths) for a in args))
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert "error:" in result.stderr and "hint:" in result.stderr and message in result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{x}", "--embeddings", "{x}", "--labels", "{y}"], "unexpected extra argument"),
        ([], "Missing argument"),
    ],
)
def test_one_mode_per_command(files: tuple[Path, Path], args: list[str], message: str) -> None:
    # the modes are separate commands now: a RUN_DIR beside --embeddings (or nothing at all) is the parser's error
    result = invoke(*(a.format(x=files[0], y=files[1]) for a in args))
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert result.stdout == ""


def test_old_spellings_name_the_new_commands(files: tuple[Path, Path]) -> None:
    old = invoke("--embeddings", str(files[0]), "--labels", str(files[1]), "--json", "--device", "cpu")
    new = runner.invoke(app, ["evaluate-embeddings", str(files[0]), "--labels", str(files[1]), "--json"])
    assert old.exit_code == new.exit_code == 0, old.stderr
    assert "is now `dmlbench evaluate-embeddings`" in old.stderr and new.stderr == ""
    assert json.loads(old.stdout)["metrics"] == json.loads(new.stdout)["metrics"]


def test_cuda_without_cuda_exits_4(files: tuple[Path, Path]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = invoke("--embeddings", str(files[0]), "--labels", str(files[1]), "--device", "cuda")
    assert result.exit_code == 4 and "no CUDA device" in result.stderr


def test_run_dir_end_to_end(tmp_path: Path, data_root: Path, make_run: Any) -> None:
    run_dir = make_run(tmp_path, data_root)
    result = invoke(str(run_dir), "--data-root", str(data_root), "--device", "cpu", "--json", "--save-embeddings")
    assert result.exit_code == 0, result.stderr
    body = json.loads(result.stdout)
    written = json.loads((run_dir / "eval" / "test" / "metrics.json").read_text())
    assert body["metrics"] == written["metrics"] and body["path"] == str(run_dir / "eval" / "test" / "metrics.json")
    assert (run_dir / "eval" / "test" / "embeddings.npy").is_file()
    again = invoke(
        "--embeddings",
        str(run_dir / "eval/test/embeddings.npy"),
        "--labels",
        str(run_dir / "eval/test/labels.npy"),
        "--json",
        "--device",
        "cpu",
    )
    assert json.loads(again.stdout)["metrics"] == pytest.approx(written["metrics"])
    result = invoke(str(run_dir), "--data-root", str(data_root), "--split", "val")
    assert result.exit_code == 2 and "no validation split" in result.stderr


def test_baseline_through_the_cli_writes_then_reuses_its_folder(tmp_path: Path, data_root: Path) -> None:
    args = ["--baseline", "raw", "--dataset", "digits", "--runs-root", str(tmp_path), "--data-root", str(data_root)]
    first = invoke(*args, "--json", "--device", "cpu")
    assert first.exit_code == 0, first.stderr
    body = json.loads(first.stdout)
    folder = tmp_path / "baselines" / "digits-raw-small_cnn-seed0"
    assert body["path"] == str(folder / "eval" / "test" / "metrics.json") and body["reused"] is False
    assert body["metrics"] == json.loads((folder / "eval" / "test" / "metrics.json").read_text())["metrics"]
    assert body["n_queries"] == 896 and body["protocol"] == "query=gallery, self excluded by index"
    again = invoke(*args)
    assert again.exit_code == 0, again.stderr
    assert "reused" in again.stdout and "recall@1" in again.stdout
    untrained = invoke("--baseline", "untrained", "--dataset", "digits", "--seed", "2", *args[4:], "--json")
    assert untrained.exit_code == 0, untrained.stderr
    assert (tmp_path / "baselines" / "digits-untrained-small_cnn-seed2" / "manifest.json").is_file()


def test_gallery_files_through_the_cli(files: tuple[Path, Path], tmp_path: Path) -> None:
    np.save(tmp_path / "gx.npy", X[::3])
    np.save(tmp_path / "gy.npy", Y[::3])
    result = invoke(
        "--embeddings",
        str(files[0]),
        "--labels",
        str(files[1]),
        "--gallery-embeddings",
        str(tmp_path / "gx.npy"),
        "--gallery-labels",
        str(tmp_path / "gy.npy"),
        "--json",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.stderr
    body = json.loads(result.stdout)
    expected = evaluate_embeddings(X, Y, device="cpu", gallery_embeddings=X[::3], gallery_labels=Y[::3])
    assert body["protocol"] == "query vs gallery" and body["n_gallery"] == 10
    assert body["metrics"] == pytest.approx(expected.metrics)
