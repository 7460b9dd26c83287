"""Time `prepare glyphs` from scratch, by stage, and check that two builds are byte-identical.

Stages: open the 16 font files (sha256 + cmap), choose the classes (outline extraction, canonical
renders, homoglyph comparisons), render every image; then the whole `prepare` (index.csv,
prepared.json, the move into place). Target: a few seconds on 2 cores. CPU time is printed beside
wall time because this machine may be shared; the wall/CPU ratio shows the contention.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_glyphs.py [--repeat 2] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dmlbench.paths import Places


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=2, help="full prepares; the best is reported")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temp folder)")
    args = parser.parse_args()

    from dmlbench.datasets import get_spec, prepare
    from dmlbench.datasets.sources import glyphs

    spec = get_spec("glyphs")
    per_class, size, seed = (int(spec.params[k]) for k in ("images_per_class", "size", "seed"))
    threshold = float(spec.params["homoglyph_threshold"])
    faces, wall, cpu = timed(lambda: glyphs.load_faces(glyphs.font_dir()))
    print(f"open fonts:      {wall:6.2f} s wall {cpu:6.2f} s cpu ({len(faces)} faces)")
    (classes, dropped), wall, cpu = timed(lambda: glyphs.select_classes(faces, size, threshold))
    print(f"choose classes:  {wall:6.2f} s wall {cpu:6.2f} s cpu ({len(classes)} classes, {len(dropped)} homoglyphs)")
    _, wall, cpu = timed(lambda: [glyphs.render_class(g, faces, per_class, size, seed) for g in classes])
    print(f"render images:   {wall:6.2f} s wall {cpu:6.2f} s cpu ({len(classes) * per_class:,} images)")

    work = Path(tempfile.mkdtemp(prefix="bench-glyphs-", dir=args.workdir))
    try:
        digests, walls, cpus = [], [], []
        for run in range(args.repeat):
            root = work / f"data-{run}"
            prepared, wall, cpu = timed(lambda: prepare("glyphs", Places.of(root)))  # noqa: B023 - called at once
            walls.append(wall)
            cpus.append(cpu)
            digests.append(hashlib.sha256(np.load(prepared.root / "images.npy").tobytes()).hexdigest())
            print(f"prepare run {run}: {wall:6.2f} s wall {cpu:6.2f} s cpu")
        print(f"prepare glyphs (best of {args.repeat}): {min(walls):.2f} s wall, {min(cpus):.2f} s cpu")
        same = len(set(digests)) == 1
        print(f"images.npy sha256 {digests[0][:16]}... identical across runs: {same}")
        if not same:
            raise SystemExit("two builds with the same fonts and seed differ")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
