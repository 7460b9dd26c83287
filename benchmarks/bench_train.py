"""Training-step throughput: the full step versus the model's bare forward+backward on the same batches.

full = P x K sampling + get_batch + forward + loss (on the gathered batch) + backward + optimizer step,
       i.e. `dmlbench.training.loop.train_step` fed by the real sampler and dataset;
bare = forward + backward of `embeddings.sum()` on the same, pre-loaded batches (no sampler, no loss,
       no optimizer): the ceiling the data pipeline and the loss must not pull far below.

    python benchmarks/bench_train.py                                   # CPU: small CNN, digits + fashion-mnist
    python benchmarks/bench_train.py --device cuda --dataset synthetic --backbone googlenet --image-size 224
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
from markdown_table import print_table  # benchmarks/ is sys.path[0] when a script runs

from dmlbench.config import load_config
from dmlbench.datasets import get_spec, open_prepared, prepare
from dmlbench.datasets.loader import BatchLoader
from dmlbench.datasets.sampler import PKBatchSampler
from dmlbench.datasets.torch_data import build_dataset
from dmlbench.errors import MissingInputError
from dmlbench.losses import LOSSES
from dmlbench.models import backbone_info, build_embedder, preprocessing
from dmlbench.paths import Places
from dmlbench.resolve import resolve_config
from dmlbench.training.distributed import DistContext
from dmlbench.training.loop import Parts, train_step
from dmlbench.training.optim import build_optimizer, build_scheduler
from dmlbench.utils.device import resolve_device

FASHION = Path("/usr/share/datasets/fashion-mnist")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(
    dataset: str, loss: str, *, data_root: Path, device: torch.device, steps: int, warmup: int, sets: list[str]
) -> dict[str, Any]:
    cfg = resolve_config(load_config(None, sets, {"dataset": dataset, "loss.name": loss}), get_spec(dataset))
    source = FASHION if dataset == "fashion-mnist" and FASHION.is_dir() else None
    try:
        prepared = open_prepared(dataset, data_root)
    except MissingInputError:  # not prepared yet (anything else is a real error)
        prepared = prepare(dataset, Places.of(data_root), source=source)
    frame = prepared.split("train")
    data = build_dataset(
        prepared,
        frame,
        train=True,
        image_size=cfg.model.image_size,
        channels=cfg.model.in_channels,
        **preprocessing(cfg.model),
    )
    labels = frame["label"].to_numpy()
    p, k = cfg.sampler.classes_per_batch or 0, cfg.sampler.samples_per_class or 0
    sampler = PKBatchSampler(labels, p, k, seed=0)
    batches: list[list[int]] = []
    epoch = 0
    while len(batches) < warmup + steps:
        batches += sampler.batches(epoch)
        epoch += 1
    batches = batches[: warmup + steps]

    torch.manual_seed(0)
    model = build_embedder(cfg.model.model_copy(update={"pretrained": False})).to(device).train()
    amp_dtype = torch.bfloat16 if device.type == "cuda" else None
    channels_last = device.type == "cuda" and backbone_info(cfg.model.backbone or "").channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg.optim)
    loader = BatchLoader(data, device=device)
    parts = Parts(
        model=model,
        loss_fn=LOSSES.build(loss, cfg.loss.kwargs()).to(device),
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg.schedule, total_steps=10**9),
        scaler=None,
        device=device,
        dist=DistContext(),
        total_steps=10**9,
        global_batch_size=p * k,
        checkpoint_every=10**9,
        amp_dtype=amp_dtype,
        channels_last=channels_last,
    )

    def full() -> float:
        _sync(device)
        start = 0.0
        for i, (images, batch_labels) in enumerate(loader(batches)):
            if i == warmup:
                _sync(device)
                start = time.perf_counter()
            train_step(parts, images, batch_labels)
        _sync(device)
        return steps * p * k / (time.perf_counter() - start)

    preloaded = list(loader(batches))
    if channels_last:
        preloaded = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in preloaded]

    def bare() -> float:
        _sync(device)
        start = 0.0
        for i, (images, _) in enumerate(preloaded):
            if i == warmup:
                _sync(device)
                start = time.perf_counter()
            with torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else torch.autocast("cpu", enabled=False):
                out = model(images)
            model.zero_grad(set_to_none=True)
            out.float().sum().backward()
        _sync(device)
        return steps * p * k / (time.perf_counter() - start)

    # Interleave and keep the best of 3: the benchmark machine may be shared.
    results = [(full(), bare()) for _ in range(3)]
    best_full, best_bare = max(r[0] for r in results), max(r[1] for r in results)
    return {
        "dataset": dataset,
        "backbone": cfg.model.backbone,
        "size": cfg.model.image_size,
        "loss": loss,
        "batch": f"{p}x{k}",
        "full img/s": best_full,
        "bare img/s": best_bare,
        "ratio": best_full / best_bare,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", action="append", help="digits, fashion-mnist, synthetic, ... (repeatable)")
    parser.add_argument("--loss", action="append", help="default: all four")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--backbone", help="override the dataset's backbone")
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--set", action="append", default=[], dest="sets", help="config override key=value")
    parser.add_argument("--data-root", type=Path, default=Path.home() / ".cache" / "dmlbench" / "data")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    sets = list(args.sets)
    if args.backbone:
        sets.append(f"model.backbone={args.backbone}")
    if args.image_size:
        sets.append(f"model.image_size={args.image_size}")
    rows = [
        bench(dataset, loss, data_root=args.data_root, device=device, steps=args.steps, warmup=args.warmup, sets=sets)
        for dataset in args.dataset or ["digits", "fashion-mnist"]
        for loss in args.loss or ["clustering", "triplet", "lifted", "npairs"]
    ]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()} threads"
    print(f"device: {name}, torch {torch.__version__}")
    print_table(rows)


if __name__ == "__main__":
    main()
