"""Batches for training, validation, evaluation and baselines: one loader, whatever the dataset.

In-memory arrays (digits, glyphs, fashion-mnist) build a batch with a few vectorised tensor
operations in this process (`get_batch`): worker processes would only add the cost of sending the
batch back, so "auto" means no workers for them. Image files are decoded by `num_workers` processes
("auto": this process's cores minus one), kept alive across epochs, and travel as uint8 (pinned on
CUDA) to the device, where they are normalised. Which worker decodes an image never matters: a
training image's crop and flip are drawn from `sample_seed(seed, epoch, position)`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch

from dmlbench.utils.cpu import available_cores

WorkersSetting = int | Literal["auto"]


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """The augmentation seed of the sample at `position` of `epoch`'s sample stream.

    A function of these three numbers alone, never of which process or worker draws the sample, so
    results do not depend on num_workers and a resumed run draws exactly what it would have drawn.
    """
    state = np.random.SeedSequence((seed, epoch, position)).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 32 | int(state[1])


def data_workers(setting: WorkersSetting, *, in_memory: bool, batches: int | None = None, share: int = 1) -> int:
    """The data-loading processes to start for `setting`.

    An explicit count is used as given. "auto": none for in-memory arrays; otherwise the cores this
    process may use, divided among the `share` processes loading on the same machine (DDP ranks),
    minus one for the process that trains, and never more than the `batches` there are to load.
    """
    if setting != "auto":
        return int(setting)
    if in_memory:
        return 0
    workers = max(0, available_cores() // max(1, share) - 1)
    return workers if batches is None else min(workers, batches)


class _Items(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """A dataset's items up to normalisation (uint8), what worker processes send back."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: Any) -> tuple[torch.Tensor, int]:
        result: tuple[torch.Tensor, int] = self.dataset.uint8_item(item)
        return result


def _staged(dataset: Any) -> bool:
    """Whether `dataset` hands out uint8 items and normalises batches itself (dmlbench's image files)."""
    return hasattr(dataset, "uint8_item") and hasattr(dataset, "normalize")


class _Batches:
    """The index lists of the current pass; a persistent loader re-reads it each time it is iterated."""

    def __init__(self) -> None:
        self.lists: list[list[Any]] = []

    def __iter__(self) -> Iterator[list[Any]]:
        return iter(self.lists)

    def __len__(self) -> int:
        return len(self.lists)


class BatchLoader:
    """(images, labels) on `device` for lists of dataset positions, in order; images are the model's float input.

    With `seed`, a training pass passes `epoch` and each sample's `position` in the epoch's sample
    stream so that augmentation follows them; evaluation passes neither. Worker processes (if any)
    start on first use and live until `close()` (or until the loader is garbage collected).
    """

    def __init__(
        self,
        dataset: Any,
        *,
        device: torch.device,
        num_workers: WorkersSetting = "auto",
        share: int = 1,
        batches: int | None = None,
    ) -> None:
        self.dataset = dataset
        self.device = device
        self.vectorised = hasattr(dataset, "get_batch")
        self.staged = _staged(dataset)
        self.num_workers = data_workers(num_workers, in_memory=self.vectorised, batches=batches, share=share)
        self._batches = _Batches()
        self._loader: torch.utils.data.DataLoader[Any] | None = None

    def _data_loader(self) -> torch.utils.data.DataLoader[Any]:
        if self._loader is None:
            cuda = self.device.type == "cuda"
            workers = self.num_workers
            self._loader = torch.utils.data.DataLoader(
                _Items(self.dataset) if self.staged else self.dataset,
                batch_sampler=self._batches,  # type: ignore[arg-type]
                num_workers=workers,
                pin_memory=cuda,
                persistent_workers=workers > 0,
                prefetch_factor=(4 if cuda else 2) if workers > 0 else None,
            )
        return self._loader

    def __call__(
        self,
        lists: Sequence[Sequence[int]],
        *,
        seed: int | None = None,
        epoch: int = 0,
        positions: Sequence[Sequence[int]] | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield the batches of `lists`; `positions[b][s]` is the stream position of `lists[b][s]`."""
        if self.vectorised:
            for indices in lists:
                images, labels = self.dataset.get_batch(list(indices))
                yield self._to_device(torch.as_tensor(images)), torch.as_tensor(labels).to(self.device)
            return
        if seed is not None:
            if positions is None:
                raise ValueError("a seeded pass needs the samples' positions")
            self._batches.lists = [
                [(int(i), sample_seed(seed, epoch, int(p))) for i, p in zip(indices, where, strict=True)]
                for indices, where in zip(lists, positions, strict=True)
            ]
        else:
            self._batches.lists = [[int(i) for i in indices] for indices in lists]
        for images, labels in self._data_loader():
            images = self._to_device(images)
            yield (self.dataset.normalize(images) if self.staged else images), labels.to(self.device, non_blocking=True)

    def _to_device(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(self.device, non_blocking=True)

    def close(self) -> None:
        """Stop the worker processes (a later call starts new ones)."""
        loader, self._loader = self._loader, None
        iterator = getattr(loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
