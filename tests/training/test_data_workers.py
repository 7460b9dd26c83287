"""How the data work is spread never changes a result: data workers, the decode cache, resume (image files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from image_files import NAME, make_image_dataset

from dmlbench.config import TrainConfig, load_config
from dmlbench.datasets.cache import remove_caches
from dmlbench.paths import Places
from dmlbench.rundir import RunDir
from dmlbench.training import train

STEPS = 9  # 36 train images, 8 per batch: 4 batches an epoch, so 9 steps cross two epoch ends


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data root, catalog) of a prepared image-file dataset."""
    root = tmp_path_factory.mktemp("files")
    catalog = make_image_dataset(root / "data", root)
    return root / "data", catalog


def _cfg(*sets: str) -> TrainConfig:
    return load_config(None, list(sets), {"dataset": NAME, "loss.name": "triplet"})


def _train(cfg: TrainConfig, run_dir: Path, files: tuple[Path, Path], **kwargs: Any) -> Path:
    data_root, catalog = files
    summary = train(
        cfg, run_dir, places=Places.of(data_root, catalogs=[catalog]), device="cpu", evaluate_at_end=False, **kwargs
    )
    return summary.run_dir


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = torch.load(RunDir(run_dir).model_path, weights_only=True)
    return state


def _losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "train" / "history.jsonl").read_text().splitlines()
    return [row["loss"] for row in map(json.loads, lines) if "loss" in row]


def _same(a: Path, b: Path) -> bool:
    wa, wb = _weights(a), _weights(b)
    return _losses(a) == _losses(b) and wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_is_bit_identical_with_data_workers(workers: int, files: tuple[Path, Path], tmp_path: Path) -> None:
    reference = _train(_cfg(f"schedule.steps={STEPS}", f"schedule.num_workers={workers}"), tmp_path / "ref", files)
    run = tmp_path / "run"
    _train(_cfg("schedule.steps=3", f"schedule.num_workers={workers}"), run, files)  # stops inside epoch 1
    _train(_cfg(f"schedule.steps={STEPS}", f"schedule.num_workers={workers}"), run, files, resume=True)
    assert len(_losses(run)) == STEPS
    assert _same(run, reference)


def test_results_do_not_depend_on_workers_or_the_decode_cache(files: tuple[Path, Path], tmp_path: Path) -> None:
    data_root = files[0]
    remove_caches(data_root / NAME)  # the other tests' runs built one
    plain = _train(
        _cfg("schedule.steps=6", "schedule.num_workers=0", "schedule.decode_cache=false"), tmp_path / "a", files
    )
    assert not (data_root / NAME / "decode-cache").exists()
    cached = _train(_cfg("schedule.steps=6", "schedule.num_workers=2"), tmp_path / "b", files)
    assert len(list((data_root / NAME / "decode-cache").iterdir())) == 1  # built by the first run that asked
    assert _same(plain, cached)
    # The augmentation is really random per sample: another seed trains on other crops.
    other = _train(_cfg("schedule.steps=6", "schedule.num_workers=2", "seed=1"), tmp_path / "c", files)
    assert _losses(other) != _losses(plain)


def test_threads_are_part_of_the_config_and_the_manifest(files: tuple[Path, Path], tmp_path: Path) -> None:
    before = torch.get_num_threads()
    run = _train(_cfg("schedule.steps=1", "schedule.threads=3"), tmp_path / "t", files)
    assert RunDir(run).read_manifest().threads == 3
    assert "threads = 3" in (run / "config.toml").read_text()
    assert torch.get_num_threads() == before  # the caller's setting is restored after the run
