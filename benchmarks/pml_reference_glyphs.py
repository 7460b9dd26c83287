"""A plain pytorch-metric-learning training run on glyphs: the bar dmlbench's glyphs defaults must reach.

Same data (the prepared glyphs arrays, scaled to [-1, 1] like dmlbench does), same network (SmallCNN +
Linear 64, L2-normalised), same P x K batches per epoch and epochs; PML's loss, miner and sampler, and
plain Adam. Prints test Recall@1 and NMI computed by dmlbench's evaluator (the same metric code).

    PYTHONPATH=. .venv/bin/python benchmarks/pml_reference_glyphs.py --data-root /tmp/g/data [--loss ms|triplet]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from pytorch_metric_learning import losses, miners, samplers
from torch import nn

from dmlbench.datasets import get_spec, prepare
from dmlbench.evaluation.core import evaluate_embeddings
from dmlbench.models.backbones import SmallCNN
from dmlbench.paths import Places


def arrays(prepared_root: Path, frame) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
    images = np.load(prepared_root / "images.npy")
    rows = np.array([int(str(path).rsplit("#", 1)[1]) for path in frame["path"]])
    x = torch.from_numpy(images[rows]).float().div(127.5).sub(1.0).unsqueeze(1)
    return x, torch.from_numpy(frame["label"].to_numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--loss", choices=["ms", "triplet"], default="ms")
    spec = get_spec("glyphs")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--p", type=int, default=spec.default_batch_classes)
    parser.add_argument("--k", type=int, default=spec.default_batch_per_class)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    prepared = prepare("glyphs", Places.of(args.data_root))
    train_x, train_y = arrays(prepared.root, prepared.split("train"))
    test_x, test_y = arrays(prepared.root, prepared.split("test"))
    backbone = SmallCNN(1)
    model = nn.Sequential(backbone, nn.Linear(backbone.out_features, 64))
    if args.loss == "ms":
        loss_fn: nn.Module = losses.MultiSimilarityLoss()
        miner: nn.Module = miners.MultiSimilarityMiner()
    else:
        loss_fn, miner = (
            losses.TripletMarginLoss(margin=0.1),
            miners.TripletMarginMiner(margin=0.1, type_of_triplets="semihard"),
        )
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    batch = args.p * args.k
    steps = len(train_y) // batch  # the batches per epoch of dmlbench's PKBatchSampler
    sampler = samplers.MPerClassSampler(train_y, m=args.k, batch_size=batch, length_before_new_iter=steps * batch)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        order = torch.as_tensor(list(iter(sampler)))
        for step in range(steps):
            idx = order[step * batch : (step + 1) * batch]
            emb = model(train_x[idx])
            loss = loss_fn(emb, train_y[idx], miner(emb, train_y[idx]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch + 1}: loss {loss.item():.4f} ({time.perf_counter() - start:.0f} s)")
    model.eval()
    with torch.no_grad():
        emb = nn.functional.normalize(torch.cat([model(x) for x in torch.split(test_x, 512)]), dim=1)
    metrics = evaluate_embeddings(
        emb.numpy(), test_y.numpy(), recall_k=(1,), metrics=["recall@1", "nmi"], device="cpu"
    ).metrics
    print(
        f"PML {args.loss}: test recall@1 {metrics['recall@1']:.4f}  nmi {metrics['nmi']:.4f}  "
        f"({args.epochs} epochs x {steps} steps of {args.p}x{args.k}, lr {args.lr}, "
        f"{time.perf_counter() - start:.0f} s)"
    )


if __name__ == "__main__":
    main()
