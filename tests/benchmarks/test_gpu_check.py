"""benchmarks/gpu_check.py: its --dry-run (CPU, tiny sizes) runs every section and writes JSON + markdown."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dry_run_measures_every_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gpu_check = _script()
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "gpu_check.json").read_text(encoding="utf-8"))
    assert results["dry_run"] is True and results["errors"] == {}
    assert results["environment"]["device"] == "cpu" and results["environment"]["torch"] == torch.__version__

    parity = results["parity"]
    losses = {row["loss"] for row in parity["rows"]}
    assert losses == {"clustering", "triplet", "lifted", "npairs"} and parity["ok"] is True
    assert {row["dtype"] for row in parity["rows"]} == {"float32", "float64"}

    rows = results["clustering"]["rows"]
    assert [(row["n"], row["k"]) for row in rows] == [tuple(size) for size in gpu_check.DRY["clustering_sizes"]]
    for row in rows:
        for key in ("forward_backward_ms", "greedy_ms", "pam_ms", "inference_ms", "inference_ms_data_dependent"):
            assert row[key] > 0, key
        assert row["syncs_in_greedy_loop"] is None  # counted only on CUDA

    train = results["train"]
    assert {row["loss"] for row in train["rows"]} == losses and train["amp"] is False
    assert all(row["step_img_s"] > 0 and row["bare_img_s"] > 0 for row in train["rows"])

    evaluation = results["evaluation"]
    assert evaluation["ok"] is True and evaluation["device_metrics"] == evaluation["cpu_metrics"]
    assert set(evaluation["device_metrics"]) >= {"recall@1", "r_precision", "map@r", "nmi"}

    pipeline = results["pipeline"]
    assert pipeline["device"] == "cpu" and pipeline["backbone"]["img/s"] > 0
    assert {row["pipeline"] for row in pipeline["rows"]} >= {"before", "train", "eval"}
    assert all(row["img/s"] > 0 and row["img/s per core"] > 0 for row in pipeline["rows"])

    criteria = results["criteria"]
    assert criteria["parity"] is True and criteria["eval_agrees_1e-4"] is True
    assert set(criteria["amp_step_at_least_90pct_of_bare"]) == losses

    report = (tmp_path / "gpu_check.md").read_text(encoding="utf-8")
    for heading in ("## Criteria", "## Parity", "## Clustering loss", "## Training step", "## Evaluation", "## Data"):
        assert heading in report
    assert report in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_without_a_device_is_an_environment_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _script().main(["--out", str(tmp_path), "--sections", "parity"]) == 4
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "hint: " in err
    assert not (tmp_path / "gpu_check.json").exists()
