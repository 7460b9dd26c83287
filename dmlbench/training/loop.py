"""The training loop, top to bottom (nanoGPT's shape): batch -> forward -> global loss -> backward -> step.

`parts.py` builds every part and `run.py` hands them over in a `Parts`; this module owns only the order of
operations: steps, history rows, validation, checkpoints and progress, all written through `parts.recorder`.
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import statistics
import time
from dataclasses import dataclass

import torch

from dmlbench.errors import InterruptedRunError, UsageError
from dmlbench.events import Event
from dmlbench.losses.base import StepScheduled
from dmlbench.training.checkpoint import Position
from dmlbench.training.distributed import gather_batch
from dmlbench.training.parts import Parts

__all__ = ["LoopResult", "Parts", "TrainingDivergedError", "run_loop", "train_step"]


class TrainingDivergedError(UsageError):
    """The loss became NaN/inf; the last good checkpoint is kept (exit 2: a setting to change)."""


def train_step(parts: Parts, images: torch.Tensor, labels: torch.Tensor) -> float:
    """One optimizer step on this rank's part of one P x K batch; returns the global loss.

    A non-finite loss is returned without stepping, so the weights stay the last good ones.
    """
    images = images.to(parts.device, non_blocking=True)
    labels = labels.to(parts.device, non_blocking=True)
    if parts.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    autocast = (
        torch.autocast(parts.device.type, dtype=parts.amp_dtype)
        if parts.amp_dtype is not None
        else contextlib.nullcontext()
    )
    with autocast:
        embeddings = parts.trained(images)
    # Losses run in float32: their masks, exp/log-sum-exp and PAM inference are not fp16-safe.
    all_embeddings, all_labels = gather_batch(embeddings.float(), labels, parts.dist)
    loss: torch.Tensor = parts.loss_fn(all_embeddings, all_labels)
    # Read to the host (a sync): the value decides whether to step and is what history records. Not the only
    # one: a loss may read values itself, and GradScaler.step checks for inf gradients on the host.
    value = float(loss.detach())
    if not math.isfinite(value):
        return value
    parts.optimizer.zero_grad(set_to_none=True)
    if parts.scaler is not None:
        parts.scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
        parts.scaler.unscale_(parts.optimizer)
    else:
        loss.backward()  # type: ignore[no-untyped-call]
    if parts.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(parts.trained.parameters(), parts.grad_clip)
    if parts.scaler is not None:
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
    else:
        parts.optimizer.step()
    parts.scheduler.step()
    return value


def flush(parts: Parts) -> None:
    """Append the buffered history rows (buffered so the loop does not fsync every step)."""
    rows, parts.pending = parts.pending, []
    if not rows:
        return
    try:
        parts.recorder.history(rows)
    except BaseException:
        # Ctrl-C mid-write: keep the rows for the interrupt handler's checkpoint; the run directory
        # drops any duplicate or torn line when it repairs the history.
        parts.pending = rows + parts.pending
        raise


def checkpoint(parts: Parts, position: Position) -> None:
    """History first, then last.pt: on disk, history never runs ahead of a checkpoint by more than a flush."""
    flush(parts)
    parts.recorder.checkpoint(parts, position, parts.best)


@dataclass(frozen=True)
class LoopResult:
    """Where the loop stopped, its last loss and its throughput (median of the last steps' images/s)."""

    position: Position
    last_loss: float | None
    images_per_s: float | None


def run_loop(parts: Parts, position: Position, *, seconds_before: float = 0.0) -> LoopResult:
    """Train from `position` until `total_steps`; checkpoint every N steps and every epoch."""
    assert parts.feed is not None, "run_loop needs the run's feed"
    feed, recorder = parts.feed, parts.recorder
    started = time.perf_counter() - seconds_before
    last_loss = math.nan
    recent_rates: collections.deque[float] = collections.deque(maxlen=50)
    try:
        while position.step < parts.total_steps:
            epoch_batches = feed.batches(position.epoch)
            task = f"epoch {position.epoch + 1}"
            remaining = min(len(epoch_batches), position.batch + parts.total_steps - position.step)
            recorder.event(Event("start", task, total=remaining - position.batch, unit="step"))
            tick = time.perf_counter()
            todo = epoch_batches[position.batch : remaining]
            for batch_index, (images, labels) in enumerate(
                feed.load(todo, position.epoch, position.batch), start=position.batch
            ):
                if isinstance(parts.loss_fn, StepScheduled):  # e.g. the clustering loss's γ decay
                    parts.loss_fn.on_step(position)
                last_loss = train_step(parts, images, labels)
                if not math.isfinite(last_loss):
                    raise TrainingDivergedError(
                        f"loss became {last_loss} at step {position.step + 1} (epoch {position.epoch + 1})",
                        hint="lower optim.lr or set optim.grad_clip; last.pt holds the last good checkpoint",
                    )
                position.batch, position.step = batch_index + 1, position.step + 1
                elapsed = time.perf_counter() - tick
                lr = float(parts.scheduler.get_last_lr()[0])
                images_per_s = parts.global_batch_size / max(elapsed, 1e-9)
                recent_rates.append(images_per_s)
                recorder.step(position.step, last_loss, lr, images_per_s)
                parts.pending.append(
                    {
                        "step": position.step,
                        "epoch": position.epoch + 1,
                        "loss": last_loss,
                        "lr": lr,
                        "images_per_s": round(images_per_s, 1),
                        "seconds": round(time.perf_counter() - started, 3),
                    }
                )
                recorder.event(
                    Event("advance", task, amount=1, fields={"loss": last_loss, "lr": lr, "img/s": round(images_per_s)})
                )
                if position.step % parts.checkpoint_every == 0:
                    checkpoint(parts, position)
                tick = time.perf_counter()  # the next step's time includes loading its batch
            recorder.event(Event("finish", task))
            if position.batch < len(epoch_batches):  # stopped by schedule.steps inside an epoch
                break
            position.epoch, position.batch = position.epoch + 1, 0
            flush(parts)
            val = parts.validator(parts.model, position.epoch) if parts.validator is not None else None
            if val is not None:
                recorder.validation(position.epoch, val)
                parts.pending.append({"epoch": position.epoch, "val": val})
            recorder.log(
                f"epoch {position.epoch} done: step {position.step}, loss {last_loss:.5g}"
                + (f", val {json.dumps(val)}" if val else "")
            )
            checkpoint(parts, position)
    except KeyboardInterrupt:
        # The step in flight is abandoned; `position` still names the last completed step.
        checkpoint(parts, position)
        raise InterruptedRunError(
            f"training interrupted at step {position.step}; checkpoint saved",
            hint="continue with `dmlbench train --resume` (same --run-dir)",
        ) from None
    checkpoint(parts, position)
    return LoopResult(
        position=position,
        last_loss=last_loss if math.isfinite(last_loss) else None,
        images_per_s=float(statistics.median(recent_rates)) if recent_rates else None,
    )
