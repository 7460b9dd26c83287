"""DDP on CPU (gloo, 2 processes): a 2-process step has the gradients of a 1-process step on the global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dmlbench.config import ModelConfig
from dmlbench.models import build_embedder
from dmlbench.training.distributed import DistContext, gather_batch

REGISTERED = ["clustering", "triplet", "lifted", "npairs"]
P, K = 4, 3  # 4 classes x 3 images; each rank gets 2 whole classes, as the PK sampler splits them


class AllPairsContrastive(torch.nn.Module):
    """A loss over every pair of the batch: wrong if a rank saw only its own sub-batch."""

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        distances = torch.cdist(embeddings, embeddings)
        same = labels[:, None] == labels[None, :]
        return torch.where(same, distances, torch.relu(1.0 - distances)).mean()


def _loss(name: str) -> torch.nn.Module:
    if name == "all-pairs":
        return AllPairsContrastive()
    from dmlbench.losses import LOSSES

    module: torch.nn.Module = LOSSES.build(name, {}, embedding_dim=8, num_classes=P)
    return module


def _batch() -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(P * K, 1, 8, 8, generator=generator)
    labels = torch.arange(P).repeat_interleave(K)
    torch.manual_seed(0)
    state = build_embedder(_model_cfg()).state_dict()
    return images, labels, state


def _model_cfg() -> ModelConfig:
    # feature_norm="batch": small_cnn's resolved default; its statistics span the global batch.
    return ModelConfig(backbone="small_cnn", embedding_dim=8, normalize=True, in_channels=1, feature_norm="batch")


def _gradients(
    loss_name: str, images: torch.Tensor, labels: torch.Tensor, state: dict[str, torch.Tensor], ctx: DistContext
) -> dict[str, torch.Tensor]:
    model = build_embedder(_model_cfg())
    model.load_state_dict(state)
    net: torch.nn.Module = torch.nn.parallel.DistributedDataParallel(model) if ctx.enabled else model
    share = len(images) // ctx.world_size
    mine = slice(ctx.rank * share, (ctx.rank + 1) * share)
    embeddings, all_labels = gather_batch(net(images[mine]), labels[mine], ctx)
    assert torch.equal(all_labels, labels)
    _loss(loss_name)(embeddings, all_labels).backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
    # The running statistics the step leaves behind: the global batch's on every rank.
    grads.update({f"buffer.{name}": b.detach().clone() for name, b in model.named_buffers()})
    return grads


def _worker(rank: int, world: int, init: str, names: list[str], out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        images, labels, state = _batch()
        ctx = DistContext(rank=rank, world_size=world, local_rank=rank)
        grads = {name: _gradients(name, images, labels, state, ctx) for name in names}
        if rank == 0:
            torch.save(grads, out)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_gradients(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, torch.Tensor]]:
    folder = tmp_path_factory.mktemp("ddp")
    out = folder / "grads.pt"
    names = ["all-pairs", *REGISTERED]
    # fork, not spawn: the children need no fresh interpreter (and no re-import of torch), which saves ~20 s.
    mp.start_processes(  # type: ignore[attr-defined, no-untyped-call]
        _worker, args=(2, f"file://{folder / 'rendezvous'}", names, str(out)), nprocs=2, join=True, start_method="fork"
    )
    grads: dict[str, dict[str, torch.Tensor]] = torch.load(out, weights_only=True)
    return grads


@pytest.mark.parametrize("loss_name", ["all-pairs", *REGISTERED])
def test_two_process_step_equals_one_process_step(
    loss_name: str, two_process_gradients: dict[str, dict[str, torch.Tensor]]
) -> None:
    images, labels, state = _batch()
    single = _gradients(loss_name, images, labels, state, DistContext())
    double = two_process_gradients[loss_name]
    assert single.keys() == double.keys() and single
    assert any(g.abs().sum() > 0 for g in single.values()), "a zero gradient would make this test vacuous"
    for name in single:
        # Equal up to float32 summation order (DDP sums rank gradients; one process sums one batch).
        scale = float(single[name].abs().max()) or 1.0
        torch.testing.assert_close(double[name], single[name], rtol=1e-4, atol=1e-4 * scale, msg=f"{loss_name}: {name}")


def test_local_only_loss_would_differ() -> None:
    """Guard for the test itself: without the gather, per-rank losses give other gradients."""
    images, labels, state = _batch()
    full = _gradients("all-pairs", images, labels, state, DistContext())
    halves = [
        _gradients("all-pairs", images[i * 6 : (i + 1) * 6], labels[i * 6 : (i + 1) * 6], state, DistContext())
        for i in range(2)
    ]
    mean_of_halves = {k: (halves[0][k] + halves[1][k]) / 2 for k in full}
    assert any(not torch.allclose(full[k], mean_of_halves[k], atol=1e-6) for k in full)


def test_sampler_gives_each_rank_distinct_classes_of_the_global_batch() -> None:
    import numpy as np

    from dmlbench.datasets.sampler import PKBatchSampler

    labels = np.repeat(np.arange(10), 6)
    whole = PKBatchSampler(labels, 4, 3, seed=1).batches(0)
    parts = [PKBatchSampler(labels, 4, 3, seed=1, num_replicas=2, rank=r).batches(0) for r in range(2)]
    for b, batch in enumerate(whole):
        assert parts[0][b] + parts[1][b] == batch
        assert not set(labels[parts[0][b]]) & set(labels[parts[1][b]])


@pytest.mark.slow
def test_nproc_per_node_trains_with_torchrun(digits_root: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dmlbench",
            "train",
            "--loss",
            "clustering",  # digits' 5 x 8 batch: 5 classes do not split over 2 ranks, its 40 samples do
            "--dataset",
            "digits",
            "--device",
            "cpu",
            "--steps",
            "4",
            "--quiet",
            "--data-root",
            str(digits_root),
            "--run-dir",
            str(tmp_path / "r"),
            "--nproc-per-node",
            "2",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = (tmp_path / "r" / "manifest.json").read_text()
    assert '"world_size": 2' in manifest and '"status": "complete"' in manifest
    assert result.stdout.count("4 steps") == 1  # only rank 0 reports
    assert "recall@1" in result.stdout  # and it evaluated the test split
    assert (tmp_path / "r" / "eval" / "test" / "metrics.json").is_file()
