"""P x K batch sampler: every batch holds P classes with K images each (valid for clustering/npairs/triplet).

Rules (documented in docs/datasets.md):
- Only classes with at least 2 images are eligible (a positive pair needs two images).
- A class with fewer than K images is sampled with replacement, so it still contributes K indices.
- Within an epoch, classes are visited in a shuffled order and reshuffled when exhausted, so every
  eligible class appears about equally often.
- An epoch has max(1, N // (P * K)) batches, N = number of samples.
- Everything is drawn from numpy's generator seeded with (seed, epoch): the same on every rank and
  rerun, so a resumed run (start_batch) sees exactly the batches it would have seen.
- With num_replicas > 1 every rank builds the same global batch (flattened class by class) and takes its
  own contiguous B / num_replicas samples, B = P * K: any world size that divides B works. The losses see
  the all-gathered global batch, so the split decides only which rank embeds which image.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from dmlbench.errors import UsageError


def divisors(n: int) -> list[int]:
    """The world sizes a global batch of n samples splits over evenly."""
    return [d for d in range(1, n + 1) if n % d == 0]


class PKBatchSampler:
    """Yields lists of dataset positions, P classes x K samples per batch (this rank's share)."""

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        classes_per_batch: int,
        samples_per_class: int,
        *,
        seed: int,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if classes_per_batch < 1 or samples_per_class < 1:
            raise UsageError(
                f"classes_per_batch ({classes_per_batch}) and samples_per_class ({samples_per_class}) must be >= 1",
                hint="set sampler.classes_per_batch and sampler.samples_per_class",
            )
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise UsageError(f"rank {rank} is not in 0..{num_replicas - 1}", hint="check the distributed setup")
        batch_size = classes_per_batch * samples_per_class
        if batch_size % num_replicas:
            raise UsageError(
                f"a {classes_per_batch}x{samples_per_class} batch ({batch_size} images) does not split over "
                f"{num_replicas} processes",
                hint=f"use a world size that divides {batch_size}: {', '.join(map(str, divisors(batch_size)))}",
            )
        array = np.asarray(labels, dtype=np.int64)
        classes, inverse, counts = np.unique(array, return_inverse=True, return_counts=True)
        order = np.argsort(inverse, kind="stable")
        groups = np.split(order, np.cumsum(counts)[:-1]) if len(array) else []
        min_images = 2 if samples_per_class > 1 else 1
        self.class_indices = [g for g in groups if len(g) >= min_images]
        self.skipped_classes = int(len(classes) - len(self.class_indices))
        if classes_per_batch > len(self.class_indices):
            raise UsageError(
                f"classes_per_batch={classes_per_batch} but only {len(self.class_indices)} classes have "
                f"at least {min_images} images",
                hint=f"use classes_per_batch <= {len(self.class_indices)} for this split",
            )
        self.classes_per_batch = classes_per_batch
        self.samples_per_class = samples_per_class
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.start_batch = 0
        self.num_batches = max(1, len(array) // (classes_per_batch * samples_per_class))

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches `__iter__` yields (call before each epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        """Batches the next `__iter__` yields: the epoch's batches minus `start_batch`."""
        return max(0, self.num_batches - self.start_batch)

    def _global_batches(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        n_classes, p, k = len(self.class_indices), self.classes_per_batch, self.samples_per_class
        batches: list[np.ndarray] = []
        queue = rng.permutation(n_classes)
        cursor = 0
        for _ in range(self.num_batches):
            if cursor + p > n_classes:
                # Reshuffle, keeping the unused tail first so no class is skipped twice in a row.
                rest = queue[cursor:]
                fresh = rng.permutation(np.setdiff1d(np.arange(n_classes), rest))
                queue = np.concatenate([rest, fresh])
                cursor = 0
            chosen = queue[cursor : cursor + p]
            cursor += p
            rows = []
            for c in chosen:
                members = self.class_indices[int(c)]
                rows.append(rng.choice(members, size=k, replace=len(members) < k))
            batches.append(np.stack(rows))  # [P, K]
        return batches

    def batches(self, epoch: int) -> list[list[int]]:
        """All of this rank's batches for `epoch` (ignores start_batch)."""
        share = self.classes_per_batch * self.samples_per_class // self.num_replicas
        lo = self.rank * share
        return [batch.reshape(-1)[lo : lo + share].tolist() for batch in self._global_batches(epoch)]

    def __iter__(self) -> Iterator[list[int]]:
        """This rank's batches of the current epoch from `start_batch` on; start_batch resets to 0 after."""
        start = self.start_batch
        yield from self.batches(self.epoch)[start:]
        self.start_batch = 0
