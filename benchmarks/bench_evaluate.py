"""Benchmark `dmlbench evaluate` at Stanford Online Products scale against the bare faiss floor.

Generates SOP-sized embeddings (60,502 x 128, 11,316 classes of 2-12 images: class centres plus noise,
so recall is mid-range), then times, each in a fresh subprocess so peak RSS is per part:

  dmlbench   evaluate_embeddings: Recall@1/10/100/1000, P@1, R-Precision, MAP@R, NMI, F1
  floor      bare faiss: IndexFlatIP search k=1000 + faiss.Kmeans(11,316 centroids, same niter) + assignment
  pml        pytorch-metric-learning AccuracyCalculator on the same data, when it is installed

Usage: python benchmarks/bench_evaluate.py [--quick] [--niter 25] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SOP_IMAGES, SOP_CLASSES, DIM = 60_502, 11_316, 128
RECALL_K = (1, 10, 100, 1000)
PML_MEMORY_CAP_BYTES = 14 << 30


def class_sizes(n_images: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Sizes in 2..12 summing to n_images, skewed towards small classes as in SOP (mean 5.35)."""
    values = np.arange(2, 13)
    weights = 0.7 ** (values - 2)
    sizes = rng.choice(values, size=n_classes, p=weights / weights.sum())
    while (gap := n_images - int(sizes.sum())) != 0:
        step = 1 if gap > 0 else -1
        movable = np.flatnonzero((sizes < 12) if step > 0 else (sizes > 2))
        pick = rng.choice(movable, size=min(abs(gap), movable.size), replace=False)
        sizes[pick] += step
    return sizes


def make_data(n_images: int, n_classes: int, dim: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class centres on the unit sphere plus isotropic noise, L2-normalised (like a trained embedder)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), class_sizes(n_images, n_classes, rng))
    rng.shuffle(labels)
    centres = rng.normal(size=(n_classes, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[labels] + noise / np.sqrt(dim) * rng.normal(size=(n_images, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), labels.astype(np.int64)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads): less sensitive than wall time to a busy machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def part_dmlbench(x: np.ndarray, y: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    from dmlbench.evaluation import evaluate_embeddings

    ks = tuple(k for k in RECALL_K if k < len(x))
    t0, c0 = time.perf_counter(), cpu_seconds()
    out = evaluate_embeddings(x, y, recall_k=ks, device=args.device, kmeans_niter=args.niter, seed=0)
    return {
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": cpu_seconds() - c0,
        "metrics": out.metrics,
        "backend": out.backend,
        "lone_queries": out.lone_queries,
    }


def part_same(x: np.ndarray, y: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    """dmlbench on exactly the metrics the AccuracyCalculator run computes (P@1, R-Precision, MAP@R, NMI)."""
    from dmlbench.evaluation import evaluate_embeddings

    t0, c0 = time.perf_counter(), cpu_seconds()
    out = evaluate_embeddings(
        x, y, metrics=["precision@1", "r_precision", "map@r", "nmi"], device=args.device, kmeans_niter=args.niter
    )
    return {"seconds": time.perf_counter() - t0, "cpu_seconds": cpu_seconds() - c0, "metrics": out.metrics}


def part_floor(x: np.ndarray, y: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    import faiss

    k = max(k for k in RECALL_K if k < len(x))
    t0, c0 = time.perf_counter(), cpu_seconds()
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    index.search(x, k)
    search_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    n_classes = int(np.unique(y).size)
    km = faiss.Kmeans(
        x.shape[1],
        n_classes,
        niter=args.niter,
        seed=0,
        verbose=False,
        min_points_per_centroid=1,
        max_points_per_centroid=len(x),
    )
    km.train(x)
    train_s = time.perf_counter() - t1
    km.index.search(x, 1)
    kmeans_s = time.perf_counter() - t1
    cpu_s = cpu_seconds() - c0
    return {
        "seconds": search_s + kmeans_s,
        "cpu_seconds": cpu_s,
        "search_seconds": search_s,
        "kmeans_train_seconds": train_s,
        "kmeans_seconds": kmeans_s,
    }


def part_pml(x: np.ndarray, y: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    try:
        from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    except ImportError:
        return {"skipped": "pytorch-metric-learning is not installed"}
    import torch

    calc = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r", "NMI"),
        # its default k=None retrieves all N neighbours (an N x N result: 14.6 GB at SOP scale);
        # max_bin_count is the largest class size, enough for R-Precision and MAP@R
        k="max_bin_count",
        device=torch.device(args.device if args.device != "auto" else "cpu"),
    )
    t0, c0 = time.perf_counter(), cpu_seconds()
    metrics = calc.get_accuracy(torch.from_numpy(x), torch.from_numpy(y), ref_includes_query=True)
    return {
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": cpu_seconds() - c0,
        "metrics": {k: float(v) for k, v in metrics.items()},
    }


PARTS = {"dmlbench": part_dmlbench, "floor": part_floor, "same": part_same, "pml": part_pml}


def run_child(part: str, data: Path, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        part,
        "--data",
        str(data),
        "--niter",
        str(args.niter),
        "--device",
        args.device,
    ]

    def cap_memory() -> None:  # a shared machine: a runaway comparison must not take everyone's RAM
        limit = PML_MEMORY_CAP_BYTES if part == "pml" else resource.RLIM_INFINITY
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))

    done = subprocess.run(cmd, capture_output=True, text=True, check=False, preexec_fn=cap_memory)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 10x smaller problem, to check the script")
    parser.add_argument("--niter", type=int, default=25, help="k-means iterations (dmlbench's default)")
    parser.add_argument("--noise", type=float, default=1.6, help="noise norm relative to the unit class centres")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2, help="alternating floor/dmlbench runs; the best counts")
    parser.add_argument("--parts", default="floor,dmlbench,same,pml", help="which parts to run (comma-separated)")
    parser.add_argument("--child", choices=sorted(PARTS), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        arrays = np.load(args.data)
        x, y = arrays["x"], arrays["y"]
        result = PARTS[args.child](x, y, args)
        result["peak_rss_mb"] = round(peak_rss_mb(), 1)
        print(json.dumps(result))
        return

    n, c = (SOP_IMAGES // 10, SOP_CLASSES // 10) if args.quick else (SOP_IMAGES, SOP_CLASSES)
    x, y = make_data(n, c, DIM, args.noise)
    load = os.getloadavg()
    print(
        f"data: {n} x {DIM} float32, {c} classes of 2-12 (noise {args.noise}), niter {args.niter}, "
        f"device {args.device}; {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.npz"
        np.savez(data, x=x, y=y)
        chosen = [p for p in ("floor", "dmlbench", "same", "pml") if p in args.parts.split(",")]
        runs: dict[str, list[dict[str, Any]]] = {part: [] for part in chosen}
        for _ in range(max(1, args.repeats)):
            for part in chosen:  # alternate, so a burst of load hits every part
                if part in ("floor", "dmlbench") or not runs[part]:
                    runs[part].append(run_child(part, data, args))
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    results = {part: best(attempts) for part, attempts in runs.items()}
    print(f"{'part':<10} {'wall s':>8} {'CPU s':>8} {'peak RSS MB':>12}  notes (best of {args.repeats} by wall)")
    for part, res in results.items():
        if "seconds" not in res:
            print(f"{part:<10} {'-':>8} {'-':>8} {'-':>12}  {res.get('skipped') or res.get('error')}")
            continue
        notes = "all walls: " + " ".join(f"{r['seconds']:.1f}" for r in runs[part] if "seconds" in r)
        if part == "floor":
            assign = res["kmeans_seconds"] - res["kmeans_train_seconds"]
            notes += (
                f"; search k={max(k for k in RECALL_K if k < n)} {res['search_seconds']:.1f}s + k-means train "
                f"{res['kmeans_train_seconds']:.1f}s + assign {assign:.1f}s"
            )
        elif part == "dmlbench":
            notes += f"; {res['backend']}, lone queries {res['lone_queries']}"
        print(f"{part:<10} {res['seconds']:>8.1f} {res['cpu_seconds']:>8.1f} {res['peak_rss_mb']:>12.0f}  {notes}")
    missing: dict[str, Any] = {}
    mine, floor, same, pml = (results.get(p, missing) for p in ("dmlbench", "floor", "same", "pml"))
    if "seconds" in same and "seconds" in pml:
        print(
            f"AccuracyCalculator / dmlbench on the same four metrics: {pml['seconds'] / same['seconds']:.2f}x wall, "
            f"{pml['cpu_seconds'] / same['cpu_seconds']:.2f}x CPU (target >= 3x); peak RSS "
            f"{pml['peak_rss_mb'] / 1024:.2f} GB vs {same['peak_rss_mb'] / 1024:.2f} GB"
        )
        for key, value in pml["metrics"].items():
            print(f"  pml {key:<28} {value:.4f}")
        for key, value in same["metrics"].items():
            print(f"  dmlbench {key:<23} {value:.4f}")
    if "seconds" in mine:
        for key, value in mine["metrics"].items():
            print(f"  {key:<12} {value:.4f}")
        if "seconds" in floor:
            print(
                f"dmlbench / bare-faiss floor: {mine['seconds'] / floor['seconds']:.2f}x wall, "
                f"{mine['cpu_seconds'] / floor['cpu_seconds']:.2f}x CPU (target <= 1.3x)"
            )
        print(
            f"dmlbench peak RSS: {mine['peak_rss_mb'] / 1024:.2f} GB (target < 4 GB; "
            f"the full N x N float32 distance matrix alone would be {n * n * 4 / 1e9:.1f} GB)"
        )


def best(attempts: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest successful attempt, or the first failure."""
    done = [a for a in attempts if "seconds" in a]
    return min(done, key=lambda a: float(a["seconds"])) if done else attempts[0]


if __name__ == "__main__":
    main()
