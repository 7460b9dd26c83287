"""Benchmark evaluation beyond exact search at 1M (or more) items: time, peak memory, metric error.

Generates clustered embeddings (128-d, 10,000 classes of about N/10,000 items: class centres on the
unit sphere plus noise, L2-normalised), then runs each part in a fresh subprocess so peak RSS is per part:

  reference   exact faiss flat search of an independent seeded query sample against the whole gallery:
              the "exact" Recall@K every other part is compared with (computed once, on a sample,
              because the full exact all-pairs search is what does not fit in the time budget)
  queries     evaluate_embeddings(queries=Q): exact search of a seeded sample, with 95% intervals
  ivf         evaluate_embeddings(index="ivf"): every query, approximate, with measured agreement
  hnsw        evaluate_embeddings(index="hnsw") (opt-in: building the graph takes minutes on 2 cores)
  kmeans      evaluate_embeddings(metrics nmi, f1) on a class-stratified sample (--cluster-sample)

Usage: python benchmarks/bench_scale.py [--items 1000000] [--parts reference,queries,ivf,kmeans]
       [--queries 10000] [--reference-queries 20000] [--cluster-sample 50000] [--markdown]
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

DIM, CLASSES = 128, 10_000
RECALL_K = (1, 2, 4, 8)
REFERENCE_SEED = 12_345  # not the evaluation's seed: the reference sample is independent of the scored one


def make_data(n_items: int, n_classes: int, dim: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class centres on the unit sphere plus isotropic noise, L2-normalised, built in chunks (bounded memory)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, size=n_items).astype(np.int64)
    centres = rng.normal(size=(n_classes, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = np.empty((n_items, dim), dtype=np.float32)
    for start in range(0, n_items, 1 << 18):
        stop = min(n_items, start + (1 << 18))
        block = centres[labels[start:stop]] + np.float32(noise / np.sqrt(dim)) * rng.standard_normal(
            size=(stop - start, dim), dtype=np.float32
        )
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        x[start:stop] = block
    return x, labels


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def part_reference(x: np.ndarray, y: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    import faiss

    from dmlbench.evaluation.sampling import query_sample, wilson_interval

    t0 = time.perf_counter()
    rows = query_sample(np.arange(len(x), dtype=np.int64), args.reference_queries, REFERENCE_SEED)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    _, idx = index.search(x[rows], max(RECALL_K) + 1)
    keep = idx != rows[:, None]  # drop each query itself (query = gallery protocol)
    neighbours = np.stack([r[k][: max(RECALL_K)] for r, k in zip(idx, keep, strict=True)])
    hit = y[neighbours] == y[rows][:, None]
    metrics = {f"recall@{k}": float(hit[:, :k].any(axis=1).mean()) for k in RECALL_K}
    n = len(rows)
    intervals = {key: wilson_interval(round(v * n), n) for key, v in metrics.items()}
    return {"seconds": time.perf_counter() - t0, "metrics": metrics, "intervals": intervals}


def part_evaluate(x: np.ndarray, y: np.ndarray, args: argparse.Namespace, **options: Any) -> dict[str, Any]:
    from dmlbench.evaluation import evaluate_embeddings

    t0 = time.perf_counter()
    out = evaluate_embeddings(x, y, recall_k=RECALL_K, device="cpu", seed=0, **options)
    return {
        "seconds": time.perf_counter() - t0,
        "metrics": out.metrics,
        "intervals": out.intervals,
        "approximation": out.approximation,
        "backend": out.backend,
    }


def run_part(name: str, data: Path, args: argparse.Namespace) -> dict[str, Any]:
    x = np.load(data / "x.npy")
    y = np.load(data / "y.npy")
    if name == "reference":
        result = part_reference(x, y, args)
    elif name == "queries":
        result = part_evaluate(x, y, args, queries=args.queries, metrics=["recall", "precision@1", "map@r"])
    elif name == "ivf":
        result = part_evaluate(x, y, args, index=args.ivf, metrics=["recall", "precision@1"])
    elif name == "hnsw":
        result = part_evaluate(x, y, args, index=args.hnsw, metrics=["recall", "precision@1"])
    elif name == "kmeans":
        result = part_evaluate(x, y, args, metrics=["nmi", "f1"], cluster_sample=args.cluster_sample)
    else:
        raise SystemExit(f"unknown part {name!r}")
    result["peak_rss_mb"] = peak_rss_mb()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime  # all threads: less sensitive to the load than wall time
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=CLASSES)
    parser.add_argument("--noise", type=float, default=1.8)
    parser.add_argument("--parts", default="reference,queries,ivf,kmeans")
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--reference-queries", type=int, default=20_000)
    parser.add_argument("--cluster-sample", type=int, default=50_000)
    parser.add_argument("--ivf", default="ivf:nprobe=16")
    parser.add_argument("--hnsw", default="hnsw:m=16,ef_search=64")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table at the end")
    parser.add_argument("--part", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:  # child process
        print(json.dumps(run_part(args.part, Path(args.data), args)))
        return

    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        t0 = time.perf_counter()
        x, y = make_data(args.items, args.classes, DIM, args.noise)
        np.save(Path(tmp) / "x.npy", x)
        np.save(Path(tmp) / "y.npy", y)
        del x, y
        print(
            f"generated {args.items:,} x {DIM} ({args.classes:,} classes) in {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )
        results: dict[str, Any] = {}
        for name in [p.strip() for p in args.parts.split(",") if p.strip()]:
            command = [sys.executable, __file__, "--part", name, "--data", tmp, *sys.argv[1:]]
            started = time.perf_counter()
            proc = subprocess.run(command, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                print(f"{name} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
            results[name]["wall_with_load_s"] = time.perf_counter() - started
            print(f"{name}: {json.dumps(results[name])}", file=sys.stderr)
    summary = {
        "items": args.items,
        "classes": args.classes,
        "dim": DIM,
        "load_before": load,
        "load_after": os.getloadavg(),
        "parts": results,
    }
    print(json.dumps(summary, indent=2))
    if args.markdown:
        print(markdown(summary))


def markdown(summary: dict[str, Any]) -> str:
    """One row per part: seconds, peak RSS, R@1 and its difference from the exact reference."""
    parts = summary["parts"]
    reference = parts.get("reference", {}).get("metrics", {}).get("recall@1")
    lines = [
        "| part | seconds | peak RSS (MB) | R@1 (%) | vs exact reference (points) | labelled as |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, result in parts.items():
        r1 = result.get("metrics", {}).get("recall@1")
        diff = "" if r1 is None or reference is None or name == "reference" else f"{100 * (r1 - reference):+.2f}"
        label = ", ".join(sorted(result.get("approximation", {}))) or ("exact sample" if name == "reference" else "")
        extra = result.get("metrics", {}).get("nmi")
        shown = f"{100 * r1:.2f}" if r1 is not None else (f"NMI {100 * extra:.2f}" if extra is not None else "")
        lines.append(f"| {name} | {result['seconds']:.1f} | {result['peak_rss_mb']:.0f} | {shown} | {diff} | {label} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
