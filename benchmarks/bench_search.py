"""Benchmark `dmlbench index` / `search` kinds: build time, query time and agreement with the exact index.

Generates a gallery like a trained embedder's (class centres on the unit sphere plus noise, L2-normalised;
SOP size by default: 60,502 x 128) and queries drawn from the same classes, builds every index kind through
`dmlbench.inference.index` and reports, per kind: build seconds, milliseconds per query (all queries in
one call), the share of queries whose top-1 equals the exact index's (which bounds |delta Recall@1|:
docs/inference.md) and the overlap of the top-10 lists.

Usage: python benchmarks/bench_search.py [--quick] [--queries 2000] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from markdown_table import print_table  # benchmarks/ is sys.path[0] when a script runs

from dmlbench.inference.embed import Embeddings
from dmlbench.inference.index import IndexParams, build_index, search


def kinds(nlist: int) -> list[tuple[str, IndexParams, str]]:
    """The kinds measured; `nlist` within the 39-points-per-centroid rule for the gallery size."""
    return [
        ("flat", IndexParams(), ""),
        ("ivf", IndexParams(nlist=nlist, nprobe=8), f"nlist={nlist} nprobe=8"),
        ("ivf", IndexParams(nlist=nlist, nprobe=32), f"nlist={nlist} nprobe=32"),
        ("ivfpq", IndexParams(nlist=nlist, nprobe=32, m=16, nbits=8), f"nlist={nlist} nprobe=32 m=16 nbits=8"),
        ("hnsw", IndexParams(m=32, ef_search=64), "m=32 efSearch=64"),
        ("hnsw", IndexParams(m=32, ef_search=256), "m=32 efSearch=256"),
    ]


def make_data(n: int, classes: int, dim: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    gallery = centres[rng.integers(0, classes, n)] + 0.08 * rng.normal(size=(n, dim))
    query = centres[rng.integers(0, classes, queries)] + 0.08 * rng.normal(size=(queries, dim))
    return gallery.astype(np.float32), query.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20,000 gallery vectors instead of 60,502")
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=0, help="faiss OpenMP threads (0: faiss's default)")
    args = parser.parse_args()
    import faiss

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    n, classes, nlist = (20_000, 3_700, 256) if args.quick else (60_502, 11_316, 1024)
    gallery, queries = make_data(n, classes, 128, args.queries)
    source = Embeddings(gallery, [str(i) for i in range(n)])
    exact: np.ndarray | None = None
    rows = []
    for kind, params, shown in kinds(nlist):
        started = time.perf_counter()
        built = build_index(source, kind=kind, params=params)
        build_s = time.perf_counter() - started
        started = time.perf_counter()
        _, positions = search(built, queries, 10)
        query_ms = 1000 * (time.perf_counter() - started) / len(queries)
        if exact is None:
            exact = positions
        top1 = float((positions[:, 0] == exact[:, 0]).mean())
        overlap = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(positions, exact, strict=True)]))
        rows.append(
            {
                "kind": kind,
                "parameters": shown or "exact",
                "build s": round(build_s, 2),
                "ms / query": round(query_ms, 3),
                "top-1 = exact": round(top1, 4),
                "top-10 overlap": round(overlap, 4),
            }
        )
    print(f"gallery {n} x 128, {len(queries)} queries, faiss threads {faiss.omp_get_max_threads()}")
    print_table(rows)


if __name__ == "__main__":
    main()
