"""Benchmark `dmlbench bench --workers N`: the same 4-run digits grid with 1 and with 2 local workers.

Each configuration runs in a fresh runs root (the digits data is prepared once, beforehand), as the real
command in a subprocess, so the timings include spawning the workers. Prints the wall times, their
ratio, and the largest difference of any test metric between the two (results must not depend on N
beyond floating-point noise from the thread counts).

Usage: python benchmarks/bench_workers.py [--losses clustering,triplet] [--seeds 2] [--epochs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_grid(
    workers: int, args: argparse.Namespace, root: Path, data: Path
) -> tuple[float, dict[str, dict[str, float]]]:
    runs = root / f"runs-{workers}"
    command = [sys.executable, "-m", "dmlbench", "bench", "--datasets", "digits", "--losses", args.losses]
    command += ["--seeds", str(args.seeds), "--epochs", str(args.epochs), "--device", "cpu", "--no-baselines"]
    command += ["--runs-root", str(runs), "--data-root", str(data), "--workers", str(workers), "--quiet"]
    command += ["--format", "json"]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    metrics = {}
    for path in sorted(runs.glob("*/eval/test/metrics.json")):
        metrics[path.parents[2].name] = json.loads(path.read_text())["metrics"]
    return seconds, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--losses", default="clustering,triplet")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        root = Path(tmp)
        data = root / "data"
        subprocess.run(
            [sys.executable, "-m", "dmlbench", "prepare", "digits", "--data-root", str(data)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        one, metrics_one = run_grid(1, args, root, data)
        two, metrics_two = run_grid(2, args, root, data)
    assert set(metrics_one) == set(metrics_two) and metrics_one, "the two grids did not finish the same runs"
    diff = max(abs(metrics_one[run][key] - metrics_two[run][key]) for run in metrics_one for key in metrics_one[run])
    print(f"cores: {len(os.sched_getaffinity(0))}, runs: {len(metrics_one)}")
    print(f"1 worker : {one:7.1f} s")
    print(f"2 workers: {two:7.1f} s")
    print(f"ratio 1/2: {one / two:.2f}x")
    print(f"largest test-metric difference between the two: {diff:.4f}")


if __name__ == "__main__":
    main()
