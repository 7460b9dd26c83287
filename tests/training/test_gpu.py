"""CUDA only (skipped elsewhere): a mixed-precision step matches a float32 step within tolerance."""

from __future__ import annotations

import pytest
import torch

from dmlbench.config import ModelConfig, OptimConfig, ScheduleConfig
from dmlbench.models import build_embedder
from dmlbench.training.distributed import DistContext
from dmlbench.training.loop import Parts, train_step
from dmlbench.training.optim import build_optimizer, build_scheduler


def _step(amp_dtype: torch.dtype | None, channels_last: bool) -> tuple[float, dict[str, torch.Tensor]]:
    from dmlbench.losses import LOSSES

    device = torch.device("cuda")
    torch.manual_seed(0)
    model = build_embedder(ModelConfig(backbone="resnet18", pretrained=False, normalize=True, freeze_bn=True)).to(
        device
    )
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optim_cfg = OptimConfig(name="sgd", lr=0.05, weight_decay=0.0, head_lr_multiplier=1.0)
    optimizer = build_optimizer(model, optim_cfg)
    parts = Parts(
        model=model,
        loss_fn=LOSSES.build("lifted", {}).to(device),  # smooth: no discrete triplet choice to flip
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, ScheduleConfig(), total_steps=10),
        scaler=None,
        device=device,
        dist=DistContext(),
        total_steps=10,
        global_batch_size=32,
        checkpoint_every=10,
        amp_dtype=amp_dtype,
        channels_last=channels_last,
    )
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(32, 3, 96, 96, generator=generator)
    labels = torch.arange(8).repeat_interleave(4)
    loss = train_step(parts, images, labels)
    return float(loss), {k: v.detach().float().cpu() for k, v in model.state_dict().items()}


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_amp_step_matches_float32_step(dtype: torch.dtype) -> None:
    loss32, weights32 = _step(None, channels_last=False)
    loss_amp, weights_amp = _step(dtype, channels_last=True)
    assert loss_amp == pytest.approx(loss32, rel=2e-2, abs=1e-3)
    before = _initial()
    for name, w32 in weights32.items():
        if not name.endswith("weight") or w32.ndim < 2:
            continue
        update32, update_amp = w32 - before[name], weights_amp[name] - before[name]
        scale = update32.norm().item()
        if scale > 0:
            assert (update_amp - update32).norm().item() / scale < 0.1, name


def _initial() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = build_embedder(ModelConfig(backbone="resnet18", pretrained=False, normalize=True, freeze_bn=True))
    return {k: v.detach().float() for k, v in model.state_dict().items()}
