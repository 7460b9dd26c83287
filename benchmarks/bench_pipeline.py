"""Image-file data pipeline throughput: before / after, with and without the decode cache, per core.

The script makes its own JPEGs with CUB's or SOP's size distribution (CUB: long side about 500 px,
mean about 500x375; SOP: about 640x480 with a wider spread), prepares them as a dataset, then measures
images/s of

- before: the pipeline as it was (torchvision Resize -> RandomResizedCrop -> flip -> ToTensor ->
  Normalize per item, float batches, no data workers, no cache): `--before` style, one core;
- train / eval: `dmlbench.datasets.loader.BatchLoader` over `ImageFileDataset` (seeded crop and flip, or
  resize + center crop), uint8 batches normalised on `--device`, at 1 core (no worker process) and at
  2 and all cores (that many data workers), without and with the decode cache;
- backbone: the bare forward+backward of `--backbone` on one batch of the same shape on `--device`, the
  images/s the pipeline has to keep up with (printed as the ratio pipeline / backbone).

    python benchmarks/bench_pipeline.py                          # CUB-sized, 1000 JPEGs, CPU
    python benchmarks/bench_pipeline.py --kind sop --images 2000
    python benchmarks/bench_pipeline.py --device cuda --images 4000   # on a GPU host (gpu_check.py runs it)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from markdown_table import print_table  # benchmarks/ is sys.path[0] when a script runs
from PIL import Image

from dmlbench.datasets.cache import CACHE_DIR, remove_caches
from dmlbench.datasets.catalog import get_spec
from dmlbench.datasets.loader import BatchLoader
from dmlbench.datasets.prepared import INDEX_FILE, PreparedDataset, open_prepared, write_info
from dmlbench.datasets.spec import DatasetSpec
from dmlbench.datasets.torch_data import IMAGENET_MEAN, IMAGENET_STD, build_dataset, resize_side
from dmlbench.utils.cpu import available_cores
from dmlbench.utils.device import resolve_device

# (mean long side, spread, landscape share, mean aspect) per dataset, from the published image statistics
KINDS = {"cub": (490, 25, 0.75, 1.33), "sop": (600, 90, 0.6, 1.3)}
IMAGE_SIZE = 224
CLASSES = 50


def _jpeg(rng: np.random.Generator, kind: str) -> Image.Image:
    """A photo-like picture (smooth shapes and texture, so it compresses like a photo, not like noise)."""
    mean, spread, landscape, aspect = KINDS[kind]
    long_side = int(np.clip(rng.normal(mean, spread), 250, 800))
    short_side = int(long_side / np.clip(rng.normal(aspect, 0.12), 1.0, 1.8))
    width, height = (long_side, short_side) if rng.random() < landscape else (short_side, long_side)
    coarse = Image.fromarray(rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
    texture = rng.normal(0, 12, (height, width, 3))
    pixels = np.clip(np.asarray(coarse, dtype=np.float32) + texture, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def make_dataset(root: Path, kind: str, images: int) -> PreparedDataset:
    """`images` generated JPEGs as a prepared dataset under `root` (made once, reused by later runs)."""
    name = f"bench-{kind}"
    folder = root / name
    try:
        prepared = open_prepared(name, root)
        if len(prepared.index) == images:
            return prepared
    except Exception:  # noqa: BLE001 - absent or from another size: make it again
        pass
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(images):
        path = f"images/{i % CLASSES:03d}/{i}.jpg"
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        _jpeg(rng, kind).save(folder / path, quality=90)
        rows.append({"path": path, "label": i % CLASSES, "split": "train"})
    frame = pd.DataFrame(rows)
    index_bytes = frame.to_csv(index=False).encode()
    (folder / INDEX_FILE).write_bytes(index_bytes)
    table = get_spec("cub200").model_dump() | {"name": name, "files": (), "expect_images": {}, "expect_classes": {}}
    spec = DatasetSpec(**table)
    write_info(folder, spec, frame, index_bytes, disjoint=True, image_size=None)
    return open_prepared(name, root)


class _Before(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """The pipeline before this change: torchvision's transforms per item, drawing from the global RNG."""

    def __init__(self, prepared: PreparedDataset) -> None:
        from torchvision import transforms as T

        self.root, self.paths = prepared.root, prepared.index["path"].tolist()
        self.transform = T.Compose(
            [
                T.Resize(resize_side(IMAGE_SIZE)),
                T.RandomResizedCrop(IMAGE_SIZE),
                T.RandomHorizontalFlip(),
                T.ToTensor(),
                T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.root / self.paths[i]) as image:
            tensor: torch.Tensor = self.transform(image.convert("RGB"))
        return tensor, 0


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (data workers, once their loader is closed)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def _rate(
    batches: Iterable[Any], device: torch.device, close: Callable[[], None] = lambda: None
) -> tuple[float, float]:
    """(images per wall second after the first batch, images per CPU second over the whole pass).

    The second is what a core delivers whatever else runs on the machine: CPU seconds of this process
    and its data workers (started, fed and stopped inside the pass) per image.
    """
    cpu_before = _cpu_seconds()
    start, seen, total = 0.0, 0, 0
    for i, (images, _) in enumerate(batches):
        total += int(images.shape[0])
        if i == 0:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            continue
        seen += int(images.shape[0])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall = seen / (time.perf_counter() - start)
    close()
    return wall, total / (_cpu_seconds() - cpu_before)


def _lists(n: int, batch: int, batches: int, seed: int) -> list[list[int]]:
    order = np.random.default_rng(seed).permutation(n).tolist()
    return [order[i * batch : (i + 1) * batch] for i in range(batches)]


def measure(
    prepared: PreparedDataset, *, device: torch.device, batch: int, batches: int, cores: list[int]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    n = len(prepared.index)

    def add(pipeline: str, cache: str, used: int, rates: tuple[float, float]) -> None:
        wall, per_core = rates
        rows.append({"pipeline": pipeline, "cache": cache, "cores": used, "img/s": wall, "img/s per core": per_core})
        print(f"[bench_pipeline] {pipeline:6s} cache={cache:3s} cores={used}: {wall:7.1f} img/s, "
              f"{per_core:6.1f} img per CPU s", flush=True)  # fmt: skip

    before = torch.utils.data.DataLoader(_Before(prepared), batch_sampler=_lists(n, batch, batches, 0), num_workers=0)
    add("before", "no", 1, _rate(((x.to(device), y) for x, y in before), device))
    for cache in ("no", "yes"):
        remove_caches(prepared.root)
        if cache == "yes":
            started, cpu_before = time.perf_counter(), _cpu_seconds()
            build_dataset(prepared, prepared.index, train=True, image_size=IMAGE_SIZE, decode_cache="build")
            seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu_before
            size = sum(f.stat().st_size for f in (prepared.root / CACHE_DIR).rglob("*") if f.is_file())
            print(f"[bench_pipeline] cache built in {seconds:.1f} s, {cpu:.1f} CPU s, {size / 2**20:.0f} MiB")
            rows.append({"pipeline": f"cache build ({size / 2**20:.0f} MiB)", "cache": "yes",
                         "cores": available_cores(), "img/s": n / seconds, "img/s per core": n / cpu})  # fmt: skip
        mode = "use" if cache == "yes" else "off"
        for train in (True, False):
            dataset = build_dataset(prepared, prepared.index, train=train, image_size=IMAGE_SIZE, decode_cache=mode)
            for used in cores:
                workers = 0 if used == 1 else used
                loader = BatchLoader(dataset, device=device, num_workers=workers)
                lists = _lists(n, batch, batches, used)
                positions = [list(range(i * batch, (i + 1) * batch)) for i in range(len(lists))]
                stream = loader(lists, seed=0, epoch=0, positions=positions) if train else loader(lists)
                add("train" if train else "eval", cache, used, _rate(stream, device, loader.close))
    return rows


def backbone_rate(name: str, *, device: torch.device, batch: int, steps: int) -> float:
    """Images/s of the backbone's bare forward+backward on one batch (random init; bf16 autocast on CUDA)."""
    from dmlbench.config import ModelConfig
    from dmlbench.models import build_embedder

    cfg = ModelConfig(backbone=name, pretrained=False, image_size=IMAGE_SIZE, in_channels=3, normalize=True)
    model = build_embedder(cfg).to(device).train()
    images = torch.randn(batch, 3, IMAGE_SIZE, IMAGE_SIZE, device=device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        model, images = (
            model.to(memory_format=torch.channels_last),
            images.contiguous(memory_format=torch.channels_last),
        )

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model(images)
        model.zero_grad(set_to_none=True)
        out.float().sum().backward()

    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return batch * steps / (time.perf_counter() - start)


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    device = resolve_device(args.device)
    all_cores = available_cores()
    cores = sorted({c for c in (1, 2, all_cores) if c <= all_cores})
    started = time.perf_counter()
    prepared = make_dataset(args.root, args.kind, args.images)
    for path in prepared.index["path"]:  # every pass reads the files from the page cache, the first one too
        (prepared.root / path).read_bytes()
    torch.set_num_threads(1)  # a run's default (schedule.threads); idle OpenMP threads would spin on CPU time
    log(f"[bench_pipeline] {args.images} {args.kind} JPEGs ready in {time.perf_counter() - started:.1f} s")
    rows = measure(prepared, device=device, batch=args.batch, batches=args.batches, cores=cores)
    backbone = backbone_rate(args.backbone, device=device, batch=args.batch, steps=args.backbone_steps)
    for row in rows:
        row["pipeline / backbone"] = row["img/s"] / backbone
    load = os.getloadavg()
    return {
        "kind": args.kind,
        "images": args.images,
        "device": str(device),
        "cores": all_cores,
        "load_average": [round(v, 2) for v in load],
        "backbone": {"name": args.backbone, "batch": args.batch, "img/s": backbone},
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=sorted(KINDS), default="cub")
    parser.add_argument("--images", type=int, default=1000, help="JPEGs to generate (made once per size)")
    parser.add_argument("--root", type=Path, default=Path("/tmp/dmlbench-bench-pipeline"), help="data root for them")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=8, help="batches per measurement (the first is not timed)")
    parser.add_argument("--backbone", default="googlenet")
    parser.add_argument("--backbone-steps", type=int, default=1, help="timed steps after one warm-up")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    results = run(args)
    backbone = results["backbone"]
    print(
        f"\n{results['images']} {results['kind']}-sized JPEGs, {IMAGE_SIZE} px crops, batch {args.batch}, "
        f"device {results['device']}, {results['cores']} cores, load average {results['load_average']}; "
        f"backbone {backbone['name']} forward+backward {backbone['img/s']:.1f} img/s\n"
    )
    # img/s: wall clock (depends on the machine's load); per core: images per CPU second of the loading processes
    keys = ["pipeline", "cache", "cores", "img/s", "img/s per core", "pipeline / backbone"]
    print_table([{key: row.get(key, "") for key in keys} for row in results["rows"]])
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
