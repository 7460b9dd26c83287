"""A bench grid's numbers do not depend on how many local workers ran it (issue: 0.871 vs 0.895 R@1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _metrics(runs_root: Path) -> dict[str, dict[str, float]]:
    """Every run's (and baseline's) test metrics, by folder."""
    found = {
        str(path.parent.parent.parent.relative_to(runs_root)): json.loads(path.read_text())["metrics"]
        for path in runs_root.rglob("eval/test/metrics.json")
    }
    assert found
    return found


@pytest.mark.slow
def test_the_digits_grid_is_bit_identical_with_one_and_two_workers(tmp_path: Path) -> None:
    from dmlbench.benchmark import BenchOptions, run_bench
    from dmlbench.paths import Places

    data = tmp_path / "data"
    outcomes = {}
    for workers in (1, 2):
        runs = tmp_path / f"runs-{workers}"
        result = run_bench(
            BenchOptions(
                places=Places.of(data, runs),
                datasets=("digits",),
                losses=("clustering", "triplet"),
                seeds=2,
                epochs=3,
                device="cpu",
                workers=workers,
            )
        )
        assert not result.failed
        outcomes[workers] = _metrics(runs)
        assert len(outcomes[workers]) == 6  # 2 losses x 2 seeds + 2 baselines
    assert outcomes[1] == outcomes[2]  # float equality: bit for bit
