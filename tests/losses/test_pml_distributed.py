"""DDP on CPU (gloo, 2 processes) for every PML-backed loss: the 2-process step equals the 1-process step.

Each rank embeds its contiguous half of the global batch (the split by images the C-of-m sampler makes),
all-gathers the embeddings with gradient and computes the loss on the global batch, as the trainer does.
Checked: the network's gradients (DDP-averaged) and the loss's own parameters' gradients equal those
of one process on the whole batch, and after an optimizer step the proxies are bit-identical on both ranks.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dmlbench.config import ModelConfig
from dmlbench.models import build_embedder
from dmlbench.training.distributed import DistContext, gather_batch

LOSSES_UNDER_TEST = [
    ("contrastive", {}),
    ("multisimilarity", {}),
    ("proxyanchor", {}),
    ("normsoftmax", {}),
    ("arcface", {}),
    ("supcon", {}),
    ("pml:CircleLoss", {}),
    ("pml:SoftTripleLoss", {"kwargs": {"centers_per_class": 2}}),
]
NAMES = [name for name, _ in LOSSES_UNDER_TEST]
CLASSES, PER_CLASS, DIM = 4, 3, 8
WORLD = 2


def _model_cfg() -> ModelConfig:
    # feature_norm="batch": small_cnn's resolved default; its statistics span the global batch.
    return ModelConfig(backbone="small_cnn", embedding_dim=DIM, normalize=True, in_channels=1, feature_norm="batch")


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(CLASSES * PER_CLASS, 1, 8, 8, generator=generator)
    # Dataset-style labels (not 0..C-1), interleaved so each rank's half holds parts of several classes.
    labels = (torch.arange(CLASSES).repeat(PER_CLASS) * 7 + 3)[torch.randperm(12, generator=generator)]
    return images, labels


def _parts(name: str, params: dict[str, Any]) -> tuple[torch.nn.Module, torch.nn.Module]:
    from dmlbench.losses import LOSSES

    torch.manual_seed(0)  # the same network and proxies in every process, as seed_everything gives
    model = build_embedder(_model_cfg())
    loss: torch.nn.Module = LOSSES.build(name, params, embedding_dim=DIM, num_classes=CLASSES)
    return model, loss


def _step(name: str, params: dict[str, Any], ctx: DistContext) -> dict[str, torch.Tensor]:
    images, labels = _batch()
    model, loss_fn = _parts(name, params)
    net: torch.nn.Module = torch.nn.parallel.DistributedDataParallel(model) if ctx.enabled else model
    share = len(images) // ctx.world_size
    mine = slice(ctx.rank * share, (ctx.rank + 1) * share)
    embeddings, all_labels = gather_batch(net(images[mine]), labels[mine], ctx)
    assert torch.equal(all_labels, labels)
    loss_fn(embeddings, all_labels).backward()
    out = {f"model.{n}": p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    out.update({f"loss.{n}": p.grad.detach().clone() for n, p in loss_fn.named_parameters()})
    out.update({f"buffer.{n}": b.detach().clone() for n, b in model.named_buffers()})
    if list(loss_fn.parameters()):
        torch.optim.SGD(loss_fn.parameters(), lr=1.0).step()
    out.update({f"after.{n}": t.detach().clone() for n, t in loss_fn.state_dict().items()})
    return out


def _worker(rank: int, init: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    try:
        ctx = DistContext(rank=rank, world_size=WORLD, local_rank=rank)
        results = {name: _step(name, params, ctx) for name, params in LOSSES_UNDER_TEST}
        torch.save(results, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def per_rank(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, dict[str, torch.Tensor]]]:
    folder = tmp_path_factory.mktemp("pml-ddp")
    out = folder / "grads.pt"
    # fork, not spawn: the children need no fresh interpreter (and no re-import of torch)
    mp.start_processes(  # type: ignore[attr-defined, no-untyped-call]
        _worker, args=(f"file://{folder / 'rendezvous'}", str(out)), nprocs=WORLD, join=True, start_method="fork"
    )
    return [torch.load(f"{out}.{rank}", weights_only=True) for rank in range(WORLD)]


@pytest.mark.parametrize(("name", "params"), LOSSES_UNDER_TEST, ids=NAMES)
def test_two_process_step_equals_one_process_step(
    name: str, params: dict[str, Any], per_rank: list[dict[str, dict[str, torch.Tensor]]]
) -> None:
    single = _step(name, params, DistContext())
    double = per_rank[0][name]
    assert single.keys() == double.keys()
    grads = [k for k in single if not k.startswith("after.")]
    assert any(bool(single[k].abs().sum() > 0) for k in grads), "a zero gradient would make this test vacuous"
    for key in single:
        # Equal up to float32 summation order (DDP sums rank gradients; one process sums one batch).
        scale = float(single[key].abs().max()) or 1.0
        torch.testing.assert_close(
            double[key].double(), single[key].double(), rtol=1e-4, atol=1e-4 * scale, msg=f"{name}: {key}"
        )


@pytest.mark.parametrize("name", ["proxyanchor", "normsoftmax", "arcface", "pml:SoftTripleLoss"])
def test_loss_parameters_stay_identical_on_every_rank(
    name: str, per_rank: list[dict[str, dict[str, torch.Tensor]]]
) -> None:
    first, second = per_rank[0][name], per_rank[1][name]
    learned = [k for k in first if k.startswith("loss.")]
    assert learned, f"{name} should have trainable parameters"
    for key in first:
        if key.startswith(("loss.", "after.")):
            assert torch.equal(first[key], second[key]), f"{name}: {key} differs between ranks"
