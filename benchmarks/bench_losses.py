"""Forward+backward time of every loss for n = 32..512 (dim 64, n/2 classes), CPU and CUDA when present.

Also times the slow loop reference of the clustering loss (tests/losses/loss_reference.py: one scikit-learn
score per candidate, as the TF reference does) and prints the speedup. Run from the repository root:

    .venv/bin/python benchmarks/bench_losses.py                 # full table, reference up to n = 128
    .venv/bin/python benchmarks/bench_losses.py --sizes 32 64 --reference-max-n 64 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "losses"))

import loss_reference  # type: ignore[import-not-found]  # noqa: E402

from dmlbench.losses import LOSSES, build_loss  # noqa: E402


def make_batch(n: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised Gaussian embeddings and n/2 classes of two samples each, shuffled."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(n, dim, generator=gen), dim=1)
    labels = torch.randperm(n, generator=gen) % max(1, n // 2)
    return x, labels


def time_call(fn: Callable[[], object], repeats: int, device: torch.device) -> tuple[float, float]:
    """Median wall-clock and process-CPU seconds of `fn` over `repeats` runs after one warm-up run.

    CPU time is reported because the benchmark machine may be shared: it is far less sensitive than wall
    time to other processes competing for the cores.
    """
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - start_cpu)
    return statistics.median(walls), statistics.median(cpus)


def forward_backward(name: str, x: torch.Tensor, labels: torch.Tensor) -> Callable[[], object]:
    loss = build_loss(name)

    def run() -> object:
        leaf = x.detach().requires_grad_()
        value = loss(leaf, labels)
        value.backward()
        return value

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reference-max-n", type=int, default=128, help="largest n timed with the loop reference")
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    args = parser.parse_args()

    devices = [torch.device(d) for d in (args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))]
    names = LOSSES.names()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, load average {os.getloadavg()}")
    for device in devices:
        if device.type == "cuda":
            print(f"device: {torch.cuda.get_device_name(device)}")
    header = ["n", "device", *[f"{name} ms" for name in names], "clustering cpu-ms", "reference ms", "ref cpu-ms"]
    header += ["speedup", "speedup cpu"]
    print("  ".join(f"{cell:>13}" for cell in header), flush=True)
    for n in args.sizes:
        x_cpu, labels_cpu = make_batch(n, args.dim, seed=n)
        reference: tuple[float, float] | None = None
        if n <= args.reference_max_n:
            x_np, labels_np = x_cpu.double().numpy(), labels_cpu.numpy()
            start, start_cpu = time.perf_counter(), time.process_time()
            loss_reference.cluster_loss(x_np, labels_np, 1.0)
            reference = (time.perf_counter() - start, time.process_time() - start_cpu)
        for device in devices:
            x, labels = x_cpu.to(device), labels_cpu.to(device)
            times = {name: time_call(forward_backward(name, x, labels), args.repeats, device) for name in names}
            row = [str(n), device.type, *[f"{times[name][0] * 1e3:.2f}" for name in names]]
            clustering_wall, clustering_cpu = times["clustering"]
            row.append(f"{clustering_cpu * 1e3:.2f}" if device.type == "cpu" else "-")
            if reference is not None:
                row += [f"{reference[0] * 1e3:.0f}", f"{reference[1] * 1e3:.0f}"]
                row.append(f"{reference[0] / clustering_wall:.0f}x")
                row.append(f"{reference[1] / clustering_cpu:.0f}x" if device.type == "cpu" else "-")
            else:
                row += ["-", "-", "-", "-"]
            print("  ".join(f"{cell:>13}" for cell in row), flush=True)
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
