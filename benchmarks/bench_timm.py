"""timm backbones: training-step throughput against the bare forward+backward, and the offline failure time.

The throughput rows reuse bench_train.py's measurement (the full step fed by the real P x K sampler
and dataset, versus forward + backward of `embeddings.sum()` on the same pre-loaded batches), for
timm models at random init, fine-tuned and with a frozen trunk (`model.freeze_backbone`).

`--offline` times how long an offline machine waits for its error: dmlbench's one-request hub probe
versus timm's own `create_model(pretrained=True)` (huggingface_hub's retries), with the hub pointed
at a closed local port (set before huggingface_hub is imported) and an empty cache.

    python benchmarks/bench_timm.py                                     # CPU: test_resnet, test_vit at 32 px
    python benchmarks/bench_timm.py --model resnet10t --image-size 64 --loss triplet
    python benchmarks/bench_timm.py --offline
    python benchmarks/bench_timm.py --device cuda --dataset synthetic --model vit_small_patch16_224 --image-size 224
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from markdown_table import print_table  # benchmarks/ is sys.path[0] when a script runs


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def offline(model: str) -> list[dict[str, Any]]:
    """Seconds until the error, dmlbench's way and timm's way, with no hub to reach."""
    # Environment first: huggingface_hub reads its endpoint and cache location when imported.
    os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{_closed_port()}"
    os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="bench-timm-hf-")
    import timm

    from dmlbench.config import ModelConfig
    from dmlbench.errors import EnvironmentFailure
    from dmlbench.models import build_embedder

    rows = []
    started = time.perf_counter()
    try:
        build_embedder(ModelConfig(backbone=f"timm:{model}", pretrained=True, normalize=True))
        outcome = "loaded?"
    except EnvironmentFailure as err:
        outcome = err.message
    rows.append({"path": "dmlbench (probe)", "seconds": time.perf_counter() - started, "outcome": outcome})
    started = time.perf_counter()
    try:
        timm.create_model(model, pretrained=True, num_classes=0)
        outcome = "loaded?"
    except Exception as err:  # whatever timm raises is the measurement's outcome
        outcome = f"{type(err).__name__}"
    rows.append({"path": "timm.create_model", "seconds": time.perf_counter() - started, "outcome": outcome})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="timm model name (repeatable; default test_resnet, test_vit)")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--loss", default="clustering")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-frozen", action="store_true", help="skip the freeze_backbone rows")
    parser.add_argument("--set", action="append", default=[], dest="sets", help="config override key=value")
    parser.add_argument("--data-root", type=Path, default=Path.home() / ".cache" / "dmlbench" / "data")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    parser.add_argument("--offline", action="store_true", help="time the offline pretrained error instead")
    args = parser.parse_args()
    models = args.model or ["test_resnet", "test_vit"]
    if args.offline:
        print_table(offline(models[0]))
        return

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_train import bench  # one measurement, owned by bench_train.py

    from dmlbench.utils.device import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    rows = []
    for model in models:
        base = [*args.sets, f'model.backbone="timm:{model}"', f"model.image_size={args.image_size}"]
        for frozen in (False,) if args.no_frozen else (False, True):
            sets = [*base, f"model.freeze_backbone={'true' if frozen else 'false'}"]
            row = bench(
                args.dataset,
                args.loss,
                data_root=args.data_root,
                device=device,
                steps=args.steps,
                warmup=args.warmup,
                sets=sets,
            )
            rows.append({"trunk": "frozen" if frozen else "trained", **row})
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()} threads"
    print(f"device: {name}, torch {torch.__version__}")
    print_table(rows)


if __name__ == "__main__":
    main()
