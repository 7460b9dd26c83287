"""`Parts`: everything the loop needs, and `build_parts`, which builds them from a resolved config.

A part is state (model, loss, optimizer, ...) or one of two objects the loop calls: the `Recorder` (what the
run folder keeps) and the `Validator`. Neither knows the loop; the loop knows only these.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from dmlbench.config import TrainConfig
from dmlbench.training.data import EpochFeed, TrainData
from dmlbench.training.distributed import DistContext
from dmlbench.training.monitor import Validator
from dmlbench.training.optim import build_optimizer, build_scheduler
from dmlbench.training.recorder import NullRecorder, Recorder


class Feed(Protocol):
    """The run's batches: index lists per epoch, and those lists loaded (training's `EpochFeed`)."""

    def batches(self, epoch: int) -> list[list[int]]: ...
    def load(
        self, lists: list[list[int]], epoch: int, first_batch: int
    ) -> Iterable[tuple[torch.Tensor, torch.Tensor]]: ...


@dataclass
class Parts:
    """Everything one training run needs, already built (and, on resume, restored)."""

    model: torch.nn.Module  # the embedder itself: what checkpoints, validation and model.pt see
    loss_fn: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    device: torch.device
    dist: DistContext
    total_steps: int
    global_batch_size: int
    checkpoint_every: int
    grad_clip: float | None = None
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    feed: Feed | None = None  # None: a bare `train_step` (benchmarks, tests) that is handed its batches
    ddp: torch.nn.Module | None = None  # the DistributedDataParallel wrapper of `model`, when distributed
    recorder: Recorder = field(default_factory=NullRecorder)
    validator: Validator | None = None  # rank 0's only
    pending: list[dict[str, Any]] = field(default_factory=list)  # history rows not yet written

    @property
    def trained(self) -> torch.nn.Module:
        """What a step runs: the DDP wrapper when distributed (it all-reduces the gradients), else the model."""
        return self.ddp if self.ddp is not None else self.model

    @property
    def best(self) -> dict[str, Any] | None:
        """The best validation so far (checkpointed with the run)."""
        return self.validator.best if self.validator is not None else None


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """`schedule.amp` on `device`: None (float32), or the autocast dtype ("auto": bf16 where the GPU has it)."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def build_parts(cfg: TrainConfig, data: TrainData, device: torch.device, dist: DistContext) -> Parts:
    """Seed, then model (channels-last where it pays), loss, optimizer, schedule and AMP scaler, in that order.

    The order is part of a run's result: each build draws from the generators `cfg.seed` just reset.
    """
    from dmlbench.losses import LOSSES
    from dmlbench.models import backbone_info, build_embedder
    from dmlbench.utils.seed import seed_everything

    seed_everything(cfg.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # every training batch has the same shape
    model = build_embedder(cfg.model).to(device)
    channels_last = bool(
        cfg.schedule.channels_last
        if cfg.schedule.channels_last is not None
        else device.type == "cuda" and backbone_info(cfg.model.backbone or "").channels_last
    )
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = LOSSES.build(
        cfg.loss.name, cfg.loss.kwargs(), embedding_dim=cfg.model.embedding_dim, num_classes=data.num_classes
    ).to(device)
    optimizer = build_optimizer(model, cfg.optim, loss_fn)
    total_steps = cfg.schedule.steps or (cfg.schedule.epochs or 1) * len(data.sampler.batches(0))
    dtype = amp_dtype(cfg.schedule.amp, device)
    return Parts(
        model=model,
        loss_fn=loss_fn,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg.schedule, total_steps=total_steps),
        scaler=torch.amp.GradScaler("cuda") if dtype == torch.float16 else None,
        device=device,
        dist=dist,
        total_steps=total_steps,
        global_batch_size=data.batch_size,
        checkpoint_every=cfg.schedule.checkpoint_every,
        grad_clip=cfg.optim.grad_clip,
        amp_dtype=dtype,
        channels_last=channels_last,
        feed=EpochFeed(data, cfg, dist, device),
    )
