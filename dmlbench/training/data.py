"""What a run trains on: the prepared dataset, the train/validation class split, the batch sampler."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dmlbench.config import TrainConfig
from dmlbench.errors import ConfigError
from dmlbench.training.distributed import DistContext


@dataclass
class TrainData:
    """The training rows, their torch dataset and sampler, and the held-out validation rows."""

    prepared: Any
    dataset: Any
    val_frame: Any
    sampler: Any
    num_classes: int

    @property
    def batch_size(self) -> int:
        """Images per global batch (what images/s counts)."""
        return int(self.sampler.batch_size)

    @property
    def val_classes(self) -> list[int]:
        return sorted(int(label) for label in self.val_frame["label"].unique())

    @staticmethod
    def build(
        prepared: Any, cfg: TrainConfig, ctx: DistContext, *, train_classes: Sequence[int] | None = None
    ) -> TrainData:
        """Split off validation classes and build the sampler; every batch-size check happens here.

        `train_classes` restricts training to those classes and validates on the rest of the train
        split (tuning's folds); otherwise `validation.val_classes` holds out a seeded share.
        """
        from dmlbench.datasets.sampler import ClassBatchSampler, PKBatchSampler
        from dmlbench.datasets.splits import held_out_classes
        from dmlbench.datasets.torch_data import dataset_for_model
        from dmlbench.losses import LOSSES

        index = prepared.index
        train_frame = index[index["split"] == "train"].reset_index(drop=True)
        if train_classes is not None:
            held_out = sorted(set(train_frame["label"].unique().tolist()) - {int(c) for c in train_classes})
        else:
            held_out = held_out_classes(train_frame["label"].to_numpy(), cfg.validation.val_classes, cfg.seed)
        val_frame = train_frame.iloc[:0]
        if held_out:
            from dmlbench.evaluation.metrics import metric_info

            metric_info(cfg.validation.metric)  # a typo fails now, not after the first epoch of training
            is_val = train_frame["label"].isin(held_out)
            val_frame = train_frame[is_val].reset_index(drop=True)
            train_frame = train_frame[~is_val].reset_index(drop=True)
        labels = train_frame["label"].to_numpy().astype(np.int64)
        p = cfg.sampler.classes_per_batch
        c_of_m = cfg.sampler.kind == "c-of-m"
        if c_of_m and cfg.sampler.batch_size is None:
            raise ConfigError(
                'sampler.kind = "c-of-m" needs sampler.batch_size', hint="e.g. --set sampler.batch_size=128"
            )
        assert p is not None and cfg.model.image_size is not None
        # the fewest images any class gets in a batch: K, or m // C for the C-of-m sampler
        k = (cfg.sampler.batch_size or 0) // p if c_of_m else cfg.sampler.samples_per_class
        assert k is not None
        need_k = int(getattr(LOSSES.get(cfg.loss.name), "min_samples_per_class", 2))
        if k < need_k:
            what = f"{cfg.sampler.batch_size} images over {p} classes" if c_of_m else f"samples_per_class = {k}"
            raise ConfigError(
                f"loss {cfg.loss.name!r} needs at least {need_k} images per class in a batch, but {what}",
                hint=f"use --set sampler.samples_per_class={need_k} (or more)"
                if not c_of_m
                else f"use at most {(cfg.sampler.batch_size or 0) // need_k} classes per batch",
            )
        batch_images = (cfg.sampler.batch_size or 0) if c_of_m else p * k
        if cfg.model.feature_norm == "batch" and batch_images < 2:
            raise ConfigError(
                f'model.feature_norm = "batch" standardises over the batch, but a batch holds {batch_images} image',
                hint="use at least 2 images per batch, or --set model.feature_norm='\"none\"'",
            )
        _, counts = np.unique(labels, return_counts=True)
        # The sampler draws K with replacement from small classes but needs two images for a positive pair.
        usable = int((counts >= min(2, k)).sum())
        if p > usable:
            shape = f"a batch of {cfg.sampler.batch_size} images from {p} classes" if c_of_m else f"a {p}x{k} batch"
            held = f" after holding out {val_frame['label'].nunique()} validation classes" if len(val_frame) else ""
            raise ConfigError(
                f"{shape} needs {p} classes, but the train split of {cfg.dataset!r}{held} has {usable} usable classes",
                hint=f"lower sampler.classes_per_batch to at most {usable}",
            )
        dataset = dataset_for_model(
            prepared,
            train_frame,
            cfg.model,
            train=True,
            decode_cache="build" if cfg.schedule.decode_cache else "off",
            num_workers=cfg.schedule.num_workers,
        )
        sampler: PKBatchSampler | ClassBatchSampler
        if c_of_m:
            sampler = ClassBatchSampler(
                labels, cfg.sampler.batch_size or 0, p, seed=cfg.seed, num_replicas=ctx.world_size, rank=ctx.rank
            )
        else:
            sampler = PKBatchSampler(labels, p, k, seed=cfg.seed, num_replicas=ctx.world_size, rank=ctx.rank)
        return TrainData(prepared, dataset, val_frame, sampler, int(len(counts)))


class EpochFeed:
    """This rank's batches of a run: the sampler's index lists per epoch, and those lists loaded on the device.

    Each sample's augmentation follows its position in the epoch's global sample stream (batch x
    global batch size + this rank's offset + slot), so neither the data workers nor the number of
    ranks nor a resume changes what a sample looks like.
    """

    def __init__(self, data: TrainData, cfg: TrainConfig, ctx: DistContext, device: torch.device) -> None:
        from dmlbench.datasets.loader import BatchLoader

        self.data, self.seed, self.rank = data, cfg.seed, ctx.rank
        self.loader = BatchLoader(
            data.dataset,
            device=device,
            num_workers=cfg.schedule.num_workers,
            share=ctx.world_size,
            batches=len(data.sampler.batches(0)),
        )

    def batches(self, epoch: int) -> list[list[int]]:
        """This rank's index lists of `epoch`."""
        batches: list[list[int]] = self.data.sampler.batches(epoch)
        return batches

    def load(self, lists: list[list[int]], epoch: int, first_batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """`lists` (batches `first_batch`... of `epoch`) as (images, labels) batches on the device, in order."""
        per_batch = self.data.batch_size
        positions = [
            [(first_batch + b) * per_batch + self.rank * len(indices) + slot for slot in range(len(indices))]
            for b, indices in enumerate(lists)
        ]
        return self.loader(lists, seed=self.seed, epoch=epoch, positions=positions)
