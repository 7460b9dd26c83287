"""Every public function that takes a path accepts `str` as well as `os.PathLike` (issue: `load_index(name,
data_root="/data")` used to raise `TypeError: unsupported operand type(s) for /`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmlbench.paths import Places


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    base = tmp_path_factory.mktemp("str-paths")
    return str(base / "data"), str(base / "runs")


def test_datasets_api_takes_str(roots: tuple[str, str], tmp_path: Path) -> None:
    from dmlbench.datasets import (
        catalog_specs,
        get_spec,
        list_status,
        load_index,
        open_or_prepare,
        open_prepared,
        prepare,
    )

    data, _ = roots
    assert prepare("digits", Places.of(data)).root == Path(data) / "digits"
    assert open_prepared("digits", data_root=data).name == "digits"
    assert len(load_index("digits", data_root=data)) == 1797
    assert open_or_prepare("digits", Places.of(data)).root == Path(data) / "digits"
    assert any(s.name == "digits" and s.prepared for s in list_status(Places.of(data)))
    catalog = tmp_path / "mine.toml"
    catalog.write_text(
        '[mine]\ntitle = "x"\nsource = "digits"\nprotocol = "class-split"\nbackbone = "small_cnn"\nimage_size = 8\n'
        "channels = 1\nrecall_k = [1]\ntrain_classes = [0, 4]\ntest_classes = [5, 9]\ndefault_batch_classes = 5\n"
        "default_batch_per_class = 8\n"
    )
    assert "mine" in catalog_specs([str(catalog)])
    assert get_spec("mine", Places.of(data, catalogs=[str(catalog)])).name == "mine"


def test_training_evaluation_reporting_take_str(roots: tuple[str, str]) -> None:
    from dmlbench.config import load_config
    from dmlbench.evaluation import evaluate, load_trained_embedder
    from dmlbench.paths import Places
    from dmlbench.reporting import report
    from dmlbench.rundir import RunDir, find_runs
    from dmlbench.training import train

    data, runs = roots
    cfg = load_config(None, ["schedule.steps=2"], {"dataset": "digits", "loss.name": "triplet"})
    summary = train(cfg, places=Places.of(data, runs), evaluate_at_end=False, device="cpu")
    run_dir = str(summary.run_dir)
    assert summary.run_dir == Path(runs) / "digits-triplet-small_cnn-seed0"
    assert RunDir(run_dir).status() == "complete"
    assert [r.root for r in find_runs(runs)] == [summary.run_dir]
    model, _ = load_trained_embedder(run_dir, "cpu")
    assert model is not None
    assert "recall@1" in evaluate(run_dir, places=Places.of(data), device="cpu").metrics
    assert "triplet" in report([runs], fmt="markdown")
