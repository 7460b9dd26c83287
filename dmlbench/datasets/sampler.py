"""Class-balanced batch samplers: P classes x K images (PKBatchSampler), or m images from C classes (ClassBatchSampler).

PKBatchSampler rules (documented in docs/datasets.md):
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

ClassBatchSampler draws the batches of Song et al. (CVPR 2017): m = batch_size images from C =
classes_per_batch classes, C/m free (0.25 for CUB/Cars196: 32 classes x 4; 0.75 for SOP: 96 classes in
128). Class sizes are as equal as possible: m mod C classes get floor(m/C) + 1 images, the others
floor(m/C) (128 from 96: 32 classes x 2 + 64 x 1). The classes drawn first get the larger share. The class
visiting order, eligibility, replacement and seeding rules are PKBatchSampler's; with num_replicas > 1
each rank takes its contiguous slice of m / num_replicas images of the same global batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from dmlbench.errors import UsageError


def divisors(n: int) -> list[int]:
    """The world sizes a global batch of n samples splits over evenly."""
    return [d for d in range(1, n + 1) if n % d == 0]


def _class_groups(array: np.ndarray, min_images: int) -> tuple[list[np.ndarray], int]:
    """Dataset positions of each class with at least `min_images` images, and the number of classes left out."""
    classes, inverse, counts = np.unique(array, return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    groups = np.split(order, np.cumsum(counts)[:-1]) if len(array) else []
    kept = [g for g in groups if len(g) >= min_images]
    return kept, int(len(classes) - len(kept))


def _class_draws(rng: np.random.Generator, n_classes: int, per_batch: int, num_batches: int) -> Iterator[np.ndarray]:
    """The classes of each batch in turn: a shuffled queue, reshuffled when it runs out.

    A generator, so a caller that draws from `rng` between batches interleaves its draws with these.
    """
    queue = rng.permutation(n_classes)
    cursor = 0
    for _ in range(num_batches):
        if cursor + per_batch > n_classes:
            # Reshuffle, keeping the unused tail first so no class is skipped twice in a row.
            rest = queue[cursor:]
            fresh = rng.permutation(np.setdiff1d(np.arange(n_classes), rest))
            queue = np.concatenate([rest, fresh])
            cursor = 0
        yield queue[cursor : cursor + per_batch]
        cursor += per_batch


class _EpochSampler:
    """What both samplers share: eligible classes, epochs drawn from (seed, epoch), each rank's contiguous
    slice of the global batch, and `start_batch` for resuming. Subclasses draw `global_batch(rng, chosen)`."""

    batch_size: int

    def _setup(
        self,
        labels: Sequence[int] | np.ndarray,
        classes_per_batch: int,
        min_images: int,
        *,
        seed: int,
        num_replicas: int,
        rank: int,
    ) -> None:
        array = np.asarray(labels, dtype=np.int64)
        self.class_indices, self.skipped_classes = _class_groups(array, min_images)
        if classes_per_batch > len(self.class_indices):
            raise UsageError(
                f"classes_per_batch={classes_per_batch} but only {len(self.class_indices)} classes have "
                f"at least {min_images} images",
                hint=f"use classes_per_batch <= {len(self.class_indices)} for this split",
            )
        self.classes_per_batch = classes_per_batch
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.start_batch = 0
        self.num_batches = max(1, len(array) // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches `__iter__` yields (call before each epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        """Batches the next `__iter__` yields: the epoch's batches minus `start_batch`."""
        return max(0, self.num_batches - self.start_batch)

    def global_batch(self, rng: np.random.Generator, chosen: np.ndarray) -> np.ndarray:
        """Every rank's positions of one batch whose classes are `chosen`, class by class."""
        raise NotImplementedError

    def global_batches(self, epoch: int) -> list[np.ndarray]:
        """Every rank's images of each batch of `epoch`, class by class ([batch_size] positions each)."""
        rng = np.random.default_rng([self.seed, epoch])
        draws = _class_draws(rng, len(self.class_indices), self.classes_per_batch, self.num_batches)
        return [self.global_batch(rng, chosen) for chosen in draws]

    def batches(self, epoch: int) -> list[list[int]]:
        """All of this rank's batches for `epoch` (ignores start_batch)."""
        share = self.batch_size // self.num_replicas
        lo = self.rank * share
        return [batch[lo : lo + share].tolist() for batch in self.global_batches(epoch)]

    def __iter__(self) -> Iterator[list[int]]:
        """This rank's batches of the current epoch from `start_batch` on; start_batch resets to 0 after."""
        start = self.start_batch
        yield from self.batches(self.epoch)[start:]
        self.start_batch = 0


class PKBatchSampler(_EpochSampler):
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
        self.samples_per_class = samples_per_class
        self.batch_size = batch_size
        min_images = 2 if samples_per_class > 1 else 1
        self._setup(labels, classes_per_batch, min_images, seed=seed, num_replicas=num_replicas, rank=rank)

    def global_batch(self, rng: np.random.Generator, chosen: np.ndarray) -> np.ndarray:
        k = self.samples_per_class
        rows = [rng.choice(m, size=k, replace=len(m) < k) for m in (self.class_indices[int(c)] for c in chosen)]
        return np.concatenate(rows)


class ClassBatchSampler(_EpochSampler):
    """Yields lists of dataset positions: `batch_size` images from `classes_per_batch` classes (this rank's slice).

    Same interface as PKBatchSampler (`batches(epoch)`, `set_epoch`, `len`, `start_batch`,
    `num_replicas`/`rank`), but the batch is split over ranks by images, not by classes.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        batch_size: int,
        classes_per_batch: int,
        *,
        seed: int,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if classes_per_batch < 1 or batch_size < classes_per_batch:
            raise UsageError(
                f"a batch of {batch_size} images cannot hold {classes_per_batch} classes",
                hint="use 1 <= sampler.classes_per_batch <= sampler.batch_size",
            )
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise UsageError(f"rank {rank} is not in 0..{num_replicas - 1}", hint="check the distributed setup")
        if batch_size % num_replicas:
            raise UsageError(
                f"a batch of {batch_size} images does not split over {num_replicas} processes",
                hint=f"use a world size that divides {batch_size}: {', '.join(map(str, divisors(batch_size)))}",
            )
        base, extra = divmod(batch_size, classes_per_batch)
        self.class_sizes = [base + 1] * extra + [base] * (classes_per_batch - extra)
        """Images per class in a batch, in batch order (the first classes drawn get the larger share)."""
        self.batch_size = batch_size
        min_images = 2 if self.class_sizes[0] > 1 else 1
        self._setup(labels, classes_per_batch, min_images, seed=seed, num_replicas=num_replicas, rank=rank)

    def global_batch(self, rng: np.random.Generator, chosen: np.ndarray) -> np.ndarray:
        parts = []
        for c, size in zip(chosen, self.class_sizes, strict=True):
            members = self.class_indices[int(c)]
            parts.append(rng.choice(members, size=size, replace=len(members) < size))
        return np.concatenate(parts)
