"""DDP support: the process group from torchrun's variables, and the global-batch gather for losses.

Batch losses (clustering, lifted, npairs, triplet) need the whole P x K batch, so every rank all-gathers
the embeddings *with gradient*: each rank then computes the same global loss, and DDP's gradient
averaging turns the per-rank gradients back into exactly the gradient of a one-process step on the
global batch (tested on CPU with gloo).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """This process's place in a distributed run (the CLI reads it from torchrun's environment)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes files and reports progress."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_process_group(ctx: DistContext, device: torch.device) -> None:
    """Join the torchrun process group (nccl on CUDA, gloo on CPU) unless already joined."""
    if not ctx.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, init_method="env://", rank=ctx.rank, world_size=ctx.world_size)


def gather_batch(embeddings: torch.Tensor, labels: torch.Tensor, ctx: DistContext) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate every rank's sub-batch in rank order; gradients flow back to each rank's embeddings."""
    if not ctx.enabled:
        return embeddings, labels
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():
        # Deprecated in favour of a private module (_functional_collectives); this public one still works.
        warnings.simplefilter("ignore", FutureWarning)
        all_embeddings = torch.cat(all_gather(embeddings), dim=0)  # type: ignore[no-untyped-call]
    gathered = [torch.empty_like(labels) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, labels)
    return all_embeddings, torch.cat(gathered, dim=0)


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (no-op in a single process)."""
    if ctx.enabled and dist.is_initialized():
        dist.barrier()
