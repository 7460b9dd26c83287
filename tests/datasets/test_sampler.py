"""PKBatchSampler: P classes x K images per batch, deterministic per (seed, epoch), resumable, shardable."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from dmlbench.datasets.sampler import PKBatchSampler
from dmlbench.errors import UsageError

LABELS = np.repeat(np.arange(10), [8, 8, 8, 8, 8, 5, 5, 3, 2, 1])  # 56 images, class 9 has a single image


def test_every_batch_has_p_classes_with_k_each() -> None:
    sampler = PKBatchSampler(LABELS, 4, 3, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 56 // 12
    for batch in batches:
        counts = Counter(LABELS[batch].tolist())
        assert len(counts) == 4 and set(counts.values()) == {3}
        assert 9 not in counts  # a lone image cannot form a positive pair
    assert sampler.skipped_classes == 1


def test_small_classes_are_sampled_with_replacement() -> None:
    sampler = PKBatchSampler(LABELS, 9, 4, seed=1)
    batch = sampler.batches(0)[0]
    by_class = Counter(LABELS[batch].tolist())
    assert by_class[8] == 4 and len(set(i for i in batch if LABELS[i] == 8)) == 2


def test_deterministic_per_seed_and_epoch() -> None:
    a, b = PKBatchSampler(LABELS, 3, 2, seed=7), PKBatchSampler(LABELS, 3, 2, seed=7)
    assert a.batches(0) == b.batches(0)
    assert a.batches(0) != a.batches(1)
    assert PKBatchSampler(LABELS, 3, 2, seed=8).batches(0) != a.batches(0)
    a.set_epoch(1)
    assert list(a) == b.batches(1)


def test_classes_are_covered_evenly() -> None:
    labels = np.repeat(np.arange(50), 4)
    sampler = PKBatchSampler(labels, 5, 2, seed=0)
    seen = Counter(
        int(labels[b[0]]) for batch in sampler.batches(0) for b in [batch[i : i + 2] for i in range(0, 10, 2)]
    )
    assert set(seen) == set(range(50))  # 20 batches x 5 classes = every class twice
    assert set(seen.values()) == {2}


def test_start_batch_resumes_then_resets() -> None:
    sampler = PKBatchSampler(LABELS, 3, 2, seed=3)
    full = sampler.batches(0)
    sampler.start_batch = 5
    assert len(sampler) == len(full) - 5
    assert list(sampler) == full[5:]
    assert sampler.start_batch == 0 and list(sampler) == full


def test_replicas_split_one_global_batch() -> None:
    ranks = [PKBatchSampler(LABELS, 4, 2, seed=0, num_replicas=2, rank=r) for r in range(2)]
    single = PKBatchSampler(LABELS, 4, 2, seed=0)
    for (r0, r1), whole in zip(
        zip(ranks[0].batches(0), ranks[1].batches(0), strict=True), single.batches(0), strict=True
    ):
        assert r0 + r1 == whole
        assert not set(LABELS[r0]) & set(LABELS[r1])


def test_too_many_classes_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as info:
        PKBatchSampler(LABELS, 10, 2, seed=0)
    assert "only 9 classes" in info.value.message and "classes_per_batch <= 9" in (info.value.hint or "")
    with pytest.raises(UsageError, match=r"4x2 batch \(8 images\) does not split over 3") as split:
        PKBatchSampler(LABELS, 4, 2, seed=0, num_replicas=3, rank=0)
    assert "1, 2, 4, 8" in (split.value.hint or "")


def test_ranks_split_the_global_batch_by_samples() -> None:
    # 3 classes x 2 images = 6 samples over 3 ranks: no rank holds a whole class, and together they
    # hold exactly the one-process batch, in order.
    whole = PKBatchSampler(LABELS, 3, 2, seed=5).batches(0)
    parts = [PKBatchSampler(LABELS, 3, 2, seed=5, num_replicas=3, rank=r).batches(0) for r in range(3)]
    for step, batch in enumerate(whole):
        assert [i for part in parts for i in part[step]] == batch
        assert all(len(part[step]) == 2 for part in parts)


def test_works_as_a_dataloader_batch_sampler() -> None:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    data = TensorDataset(torch.arange(len(LABELS)), torch.from_numpy(LABELS))
    loader = DataLoader(data, batch_sampler=PKBatchSampler(LABELS, 2, 2, seed=0))
    batches = list(loader)
    assert len(batches) == len(loader) == 14
    assert all(len(torch.unique(labels)) == 2 for _, labels in batches)
