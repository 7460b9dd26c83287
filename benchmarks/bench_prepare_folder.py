"""`prepare PATH` on a large image folder: wall time, images per second and peak memory.

The script writes N small images (64 x 64, half PNG, half JPEG; every file distinct) into class folders
of a temporary directory, then runs `prepare_path` in a fresh Python process (so its peak resident
memory is the prepare's alone) and prints one table row per size.

    python benchmarks/bench_prepare_folder.py                       # 100,000 images, 1,000 classes
    python benchmarks/bench_prepare_folder.py --images 20000 5000   # several sizes: the scaling
    python benchmarks/bench_prepare_folder.py --workers 1           # decode threads (default: up to 8)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from markdown_table import print_table  # benchmarks/ is sys.path[0] when a script runs
from PIL import Image

SIDE = 64

_CHILD = """
import json, resource, sys, time
from dmlbench.datasets import images
from dmlbench.datasets.user import prepare_path
from dmlbench.paths import Places
folder, data_root, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
if workers:
    original = images.store_images
    images.store_images = lambda jobs, **kw: original(jobs, **{**kw, "workers": workers})
    import dmlbench.datasets.sources._user as user
    user.store_images = images.store_images
started = time.perf_counter()
prepared = prepare_path(folder, Places.of(data_root))
seconds = time.perf_counter() - started
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_mib": peak_kib / 1024, "images": len(prepared.index)}))
"""


def _write_class(args: tuple[Path, int, int]) -> None:
    root, label, count = args
    rng = np.random.default_rng(label)
    folder = root / f"class {label:05d}"
    folder.mkdir(parents=True, exist_ok=True)
    base = rng.integers(0, 256, size=(1, 1, 3))
    ramp = np.linspace(0, 1, SIDE)[None, :, None]
    for i in range(count):
        pixels = base * ramp + rng.normal(0, 12, size=(SIDE, SIDE, 3))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        if i % 2:
            image.save(folder / f"{i}.jpg", quality=90)
        else:
            image.save(folder / f"{i}.png")


def generate(root: Path, images: int, classes: int) -> float:
    """N images in `classes` class folders, written by one process per core; returns the seconds taken."""
    started = time.perf_counter()
    per_class = [images // classes + (1 if c < images % classes else 0) for c in range(classes)]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(_write_class, [(root, c, n) for c, n in enumerate(per_class)], chunksize=8))
    return time.perf_counter() - started


def measure(images: int, classes: int, workers: int, scratch: Path | None) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="bench-prepare-", dir=scratch))
    try:
        folder, data_root = work / "folder", work / "data"
        generate_s = generate(folder, images, classes)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), *sys.path])}
        child = subprocess.run(
            [sys.executable, "-c", _CHILD, str(folder), str(data_root), str(workers)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        result = json.loads(child.stdout.strip().splitlines()[-1])
        return {
            "images": f"{result['images']:,}",
            "classes": f"{classes:,}",
            "generate s": f"{generate_s:.1f}",
            "prepare s": f"{result['seconds']:.1f}",
            "images/s": f"{result['images'] / result['seconds']:,.0f}",
            "peak RSS MiB": f"{result['peak_mib']:.0f}",
            "cpus": os.cpu_count(),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, nargs="+", default=[100_000])
    parser.add_argument("--images-per-class", type=int, default=100)
    parser.add_argument("--workers", type=int, default=0, help="decode threads (0: the default)")
    parser.add_argument("--scratch", type=Path, default=None, help="where the temporary folders go")
    args = parser.parse_args()
    rows = [measure(n, max(4, n // args.images_per_class), args.workers, args.scratch) for n in sorted(args.images)]
    print_table(rows)


if __name__ == "__main__":
    main()
