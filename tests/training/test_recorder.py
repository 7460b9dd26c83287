"""The loop's two collaborators: a Recorder with a null twin off rank 0, and a loss's `on_step`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from dmlbench.training.checkpoint import Position
from dmlbench.training.distributed import DistContext
from dmlbench.training.loop import Parts, run_loop
from dmlbench.training.recorder import NullRecorder, Recorder


def test_the_null_recorder_overrides_every_method_of_the_recorder() -> None:
    methods = {name for name, value in vars(Recorder).items() if callable(value) and not name.startswith("_")}
    assert methods and methods <= set(vars(NullRecorder)), "a method the null twin lacks would write on rank > 0"


class _Feed:
    """Two batches per epoch of random 4-d inputs, 4 classes x 2."""

    def batches(self, epoch: int) -> list[list[int]]:
        return [list(range(8)), list(range(8, 16))]

    def load(self, lists: list[list[int]], epoch: int, first_batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _ in lists:
            yield torch.randn(8, 4), torch.arange(4).repeat_interleave(2)


class _ScheduledLoss(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, int]] = []

    def on_step(self, position: Position) -> None:
        self.seen.append((position.step, position.epoch))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (embeddings**2).mean()


def test_the_loop_calls_on_step_before_each_step_and_the_default_recorder_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = _ScheduledLoss()
    parts = Parts(
        model=model,
        loss_fn=loss,
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0),
        scaler=None,
        device=torch.device("cpu"),
        dist=DistContext(),
        total_steps=3,
        global_batch_size=8,
        checkpoint_every=1,
        feed=_Feed(),
    )
    result = run_loop(parts, Position())
    assert (result.position.step, result.position.epoch, result.position.batch) == (3, 1, 1)
    assert loss.seen == [(0, 0), (1, 0), (2, 1)]  # steps done and epochs finished, as a resume would see them
    assert not any(tmp_path.iterdir())
