"""The local worker pool: GPU parsing, per-worker pinning, spawned processes, a dead worker loses one item."""

from __future__ import annotations

from pathlib import Path

import launch_jobs
import pytest

from dmlbench.errors import DeviceError, UsageError
from dmlbench.launch.local import (
    WorkerDiedError,
    check_workers,
    parse_gpus,
    run_in_workers,
    worker_environment,
)


def test_parse_gpus() -> None:
    assert parse_gpus(None, 0) is None
    assert parse_gpus(None, 3) == [0, 1, 2]
    assert parse_gpus("2,0", 4) == [2, 0]
    assert parse_gpus(" 1 ", 2) == [1]


@pytest.mark.parametrize(
    ("spec", "available", "error", "words"),
    [
        ("4", 4, DeviceError, "GPUs 0..3 are visible"),
        ("0", 0, DeviceError, "no GPU is visible"),
        ("0,0", 2, UsageError, "twice"),
        ("a", 2, UsageError, "not a GPU index"),
        ("-1", 2, UsageError, "not a GPU index"),
        ("", 2, UsageError, "not a list"),
        ("0,", 2, UsageError, "not a list"),
    ],
)
def test_parse_gpus_refuses(spec: str, available: int, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words) as caught:
        parse_gpus(spec, available)
    assert "\n" not in str(caught.value)
    assert getattr(caught.value, "hint", None)


def test_check_workers() -> None:
    assert check_workers(2) == 2
    with pytest.raises(UsageError, match="at least 1"):
        check_workers(0)


def test_worker_environment_pins_gpus_and_shares_cores() -> None:
    envs = [worker_environment(i, 3, [0, 2], 12) for i in range(3)]
    assert [env["CUDA_VISIBLE_DEVICES"] for env in envs] == ["0", "2", "0"]  # round robin over the GPUs
    assert {env["OMP_NUM_THREADS"] for env in envs} == {"4"}
    # Indices count the parent's visible devices: translate them back for the child.
    assert worker_environment(1, 2, [0, 1], 2, parent_visible="5,7")["CUDA_VISIBLE_DEVICES"] == "7"
    cpu = worker_environment(0, 4, None, 2)
    assert "CUDA_VISIBLE_DEVICES" not in cpu
    assert cpu["OMP_NUM_THREADS"] == "1"  # never zero threads
    with pytest.raises(ValueError):
        worker_environment(2, 2, None, 2)


def test_run_in_workers_spawns_pinned_processes() -> None:
    import os

    seen: list[int] = []
    results = run_in_workers(
        launch_jobs.describe,
        list(range(6)),
        workers=2,
        gpus=[0, 1],
        cpu_count=4,
        on_result=lambda item, result: seen.append(item),
    )
    assert sorted(seen) == list(range(6))
    assert [r[0] for r in results] == list(range(6))  # type: ignore[index]
    pids = {r[1] for r in results}  # type: ignore[index]
    assert len(pids) == 2 and os.getpid() not in pids
    by_pid = {r[1]: (r[2], r[3]) for r in results}  # type: ignore[index]
    assert sorted(by_pid.values()) == [("0", 2), ("1", 2)]  # each worker its own GPU and half the cores


def test_failures_and_a_killed_worker_lose_only_their_item() -> None:
    results = run_in_workers(launch_jobs.square_or_fail, list(range(8)), workers=2, gpus=None, cpu_count=2)
    assert isinstance(results[3], ValueError) and "three" in str(results[3])
    assert isinstance(results[5], WorkerDiedError)
    assert [r for i, r in enumerate(results) if i not in (3, 5)] == [0, 1, 4, 16, 36, 49]


def test_every_item_runs_exactly_once(tmp_path: Path) -> None:
    log = tmp_path / "done.txt"
    items = [(str(log), n) for n in range(10)]
    assert run_in_workers(launch_jobs.append_line, items, workers=2, gpus=None, cpu_count=2) == list(range(10))
    done = [int(line.split()[0]) for line in log.read_text().splitlines()]
    assert sorted(done) == list(range(10))
    assert run_in_workers(launch_jobs.append_line, [], workers=2, gpus=None) == []


def test_never_more_workers_than_items_and_each_gets_its_share_of_the_cores() -> None:
    """--workers 8 with 2 runs starts 2 processes, and each gets half the cores, not an eighth."""
    results = run_in_workers(launch_jobs.describe, [0, 1], workers=8, gpus=None, cpu_count=8)
    pids = {r[1] for r in results}  # type: ignore[index]
    assert len(pids) <= 2
    assert {r[3] for r in results} == {4}  # type: ignore[index]


def test_workers_are_bounded() -> None:
    from dmlbench.launch.local import MAX_WORKERS, check_workers

    assert check_workers(MAX_WORKERS) == MAX_WORKERS
    with pytest.raises(UsageError, match="--workers"):
        check_workers(MAX_WORKERS + 1)


def test_each_worker_gets_its_own_cores() -> None:
    from dmlbench.launch.local import core_share

    assert [core_share(i, 2, [0, 1, 2, 3]) for i in range(2)] == [[0, 1], [2, 3]]
    assert [core_share(i, 3, [4, 5]) for i in range(3)] == [[4], [5], [4]]  # more workers than cores: shared
    assert core_share(0, 1, [0, 1]) == [0, 1]
