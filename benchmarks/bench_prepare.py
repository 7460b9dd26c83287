"""Time `prepare sop --from ZIP` against plain `unzip -q` of the same SOP-sized synthetic archive.

The archive has the real SOP layout (Stanford_Online_Products/{Ebay_train,Ebay_test,Ebay_info}.txt and
<category>_final/<item>_<n>.JPG), the real split sizes (59,551 / 60,502 images, 11,318 / 11,316 classes)
and one tiny JPEG per image, deflated. prepare does more than unzip (md5 + sha256 of the archive, a
magic-byte check per image, reading the lists, writing index.csv), so the ratio is an upper bound on
the cost of its extraction. Target: ratio <= 1.5.

    .venv/bin/python benchmarks/bench_prepare.py [--scale 1.0] [--repeat 2] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from dmlbench.datasets.sources.sop import CATEGORIES
from dmlbench.paths import Places

TRAIN_IMAGES, TEST_IMAGES, TRAIN_CLASSES, TEST_CLASSES = 59_551, 60_502, 11_318, 11_316


def tiny_jpeg() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 80, 40)).save(buffer, format="JPEG", quality=60)
    return buffer.getvalue()


def per_class(images: int, classes: int, rng: np.random.Generator) -> np.ndarray:
    """`classes` near-equal counts summing to `images`."""
    counts = np.full(classes, images // classes)
    extra = images - counts.sum()
    counts[rng.choice(classes, size=extra, replace=False)] += 1
    return counts


def build_archive(path: Path, scale: float) -> tuple[int, int]:
    """Write the SOP-layout zip; returns (train images, test images)."""
    rng = np.random.default_rng(0)
    train_n, test_n = round(TRAIN_IMAGES * scale), round(TEST_IMAGES * scale)
    train_c, test_c = max(1, round(TRAIN_CLASSES * scale)), max(1, round(TEST_CLASSES * scale))
    header = "image_id class_id super_class_id path\n"
    lists = {"train": [header], "test": [header]}
    info = [header]
    paths = []
    image_id = 0
    class_id = 0
    for split, n, c in (("train", train_n, train_c), ("test", test_n, test_c)):
        for count in per_class(n, c, rng):
            class_id += 1
            super_id = (class_id - 1) % 12 + 1
            item = 111_085_122_871 + class_id * 13
            for k in range(int(count)):
                image_id += 1
                rel = f"{CATEGORIES[super_id - 1]}_final/{item}_{k}.JPG"
                line = f"{image_id} {class_id} {super_id} {rel}\n"
                lists[split].append(line)
                info.append(line)
                paths.append(rel)
    jpeg = tiny_jpeg()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("Stanford_Online_Products/Ebay_train.txt", "".join(lists["train"]))
        zf.writestr("Stanford_Online_Products/Ebay_test.txt", "".join(lists["test"]))
        zf.writestr("Stanford_Online_Products/Ebay_info.txt", "".join(info))
        for rel in paths:
            zf.writestr(f"Stanford_Online_Products/{rel}", jpeg)
    return train_n, test_n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the SOP size (1.0 = 120,053 images)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each; the best is reported")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temp folder)")
    args = parser.parse_args()
    if shutil.which("unzip") is None:
        raise SystemExit("unzip is not installed (apt-get install unzip)")

    from dmlbench.datasets import prepare
    from dmlbench.datasets.catalog import get_spec
    from dmlbench.datasets.download import file_digests
    from dmlbench.datasets.spec import DatasetSpec

    work = Path(tempfile.mkdtemp(prefix="bench-prepare-", dir=args.workdir))
    try:
        archive = work / "Stanford_Online_Products.zip"
        start = time.perf_counter()
        train_n, test_n = build_archive(archive, args.scale)
        print(
            f"built {archive.name}: {train_n + test_n:,} images, {archive.stat().st_size / 1e6:.1f} MB "
            f"in {time.perf_counter() - start:.1f} s"
        )
        md5, sha = file_digests(archive)
        table = get_spec("sop").model_dump()
        file_spec = table["files"][0] | {"urls": (), "size": archive.stat().st_size, "md5": md5, "sha256": sha}
        table.update(files=(file_spec,))
        if args.scale != 1.0:
            table.update(expect_images={}, expect_classes={})
        spec = DatasetSpec(**table)

        unzip_times, prepare_times, unzip_cpu, prepare_cpu = [], [], [], []
        for run in range(args.repeat):
            target = work / f"unzip-{run}"
            os.sync()  # start each timing with no dirty pages from the previous step
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(["unzip", "-q", str(archive), "-d", str(target)], check=True)
            unzip_times.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            unzip_cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            shutil.rmtree(target)

            root = work / f"data-{run}"
            os.sync()
            before = resource.getrusage(resource.RUSAGE_SELF)
            start = time.perf_counter()
            prepared = prepare("sop", Places.of(root), source=archive, spec=spec)
            prepare_times.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_SELF)
            prepare_cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            splits = prepared.info["splits"]
            assert splits["train"]["images"] == train_n and splits["test"]["images"] == test_n
            shutil.rmtree(root)
            print(
                f"run {run}: unzip -q {unzip_times[-1]:.2f} s (cpu {unzip_cpu[-1]:.2f} s)   "
                f"prepare sop --from zip {prepare_times[-1]:.2f} s (cpu {prepare_cpu[-1]:.2f} s)"
            )
        best_unzip, best_prepare = min(unzip_times), min(prepare_times)
        print(f"unzip -q (best of {args.repeat}):   {best_unzip:.2f} s wall, {min(unzip_cpu):.2f} s cpu")
        print(
            f"prepare sop (best of {args.repeat}): {best_prepare:.2f} s wall, {min(prepare_cpu):.2f} s cpu "
            "(includes md5+sha256, magic-byte checks, index.csv)"
        )
        ratio = best_prepare / best_unzip
        print(
            f"ratio prepare/unzip: {ratio:.2f}x wall, {min(prepare_cpu) / min(unzip_cpu):.2f}x cpu "
            f"(target <= 1.5x) -> {'OK' if ratio <= 1.5 else 'TOO SLOW'}"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
