"""Embed a dataset split with a trained model: batched, no grad, AMP on CUDA, data workers, progress events."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from dmlbench.errors import UsageError, first_line
from dmlbench.events import Event, EventHandler, emit

if TYPE_CHECKING:
    import torch


def embed_dataset(
    model: torch.nn.Module,
    dataset: Any,
    *,
    device: torch.device,
    batch_size: int = 256,
    task: str = "embed",
    on_event: EventHandler | None = None,
    num_workers: int | Literal["auto"] = "auto",
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Embeddings float32 [N, D] and labels int64 [N] of every item of `dataset`, in order.

    Batches come from `dmlbench.datasets.loader.BatchLoader` (vectorised arrays in this process, image
    files decoded by `num_workers` processes and normalised on `device`).
    """
    import torch

    from dmlbench.datasets.loader import BatchLoader

    if batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}", hint="e.g. --batch-size 256")
    n = len(dataset)
    if n == 0:
        raise UsageError("the split to embed is empty", hint="check the dataset's index.csv splits")
    model.eval()
    use_amp = device.type == "cuda"
    outputs: list[NDArray[np.float32]] = []
    labels: list[NDArray[np.int64]] = []
    emit(on_event, Event("start", task, total=float(n), unit="img"))
    lists = [list(range(start, min(start + batch_size, n))) for start in range(0, n, batch_size)]
    loader = BatchLoader(dataset, device=device, num_workers=num_workers, batches=len(lists))
    with torch.inference_mode(), contextlib.closing(loader):
        for images, batch_labels in loader(lists):
            try:
                with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=use_amp):
                    out = model(images)
            except torch.cuda.OutOfMemoryError:
                raise  # its message may mention sizes, but it is not a shape mismatch
            except RuntimeError as err:
                if "shape" in str(err) or "size" in str(err) or "channels" in str(err):
                    raise UsageError(
                        f"the model cannot embed these images of shape {tuple(images.shape[1:])}: {first_line(err)}",
                        hint="the run was trained on differently shaped inputs; check the run's dataset and image_size",
                    ) from err
                raise
            if out.ndim != 2:
                raise UsageError(
                    f"the model returned embeddings of shape {tuple(out.shape)}, not [batch, dim]",
                    hint="the embedder must output one vector per image",
                )
            outputs.append(out.float().cpu().numpy())
            labels.append(torch.as_tensor(batch_labels).cpu().numpy().astype(np.int64).reshape(-1))
            emit(on_event, Event("advance", task, amount=float(images.shape[0])))
    emit(on_event, Event("finish", task))
    return np.concatenate(outputs).astype(np.float32, copy=False), np.concatenate(labels)
