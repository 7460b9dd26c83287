"""PK (P classes x K images) and C-of-m (m images from C classes) samplers: exact, deterministic, resumable."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from dmlbench.datasets.sampler import ClassBatchSampler, PKBatchSampler
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


# -- ClassBatchSampler: m images from C classes (the paper's C/m batches) ------------------------------

SOP_LIKE = np.repeat(np.arange(300), np.tile([2, 3, 5, 7, 12], 60))  # few images per class, as SOP


@pytest.mark.parametrize(("m", "c"), [(128, 32), (128, 96), (12, 5), (10, 10)])
def test_exact_batch_size_and_class_count(m: int, c: int) -> None:
    sampler = ClassBatchSampler(SOP_LIKE, m, c, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == len(SOP_LIKE) // m
    base, extra = divmod(m, c)
    for batch in batches:
        assert len(batch) == m
        counts = Counter(SOP_LIKE[batch].tolist())
        assert len(counts) == c
        assert sorted(counts.values(), reverse=True) == [base + 1] * extra + [base] * (c - extra)


def test_sop_ratio_gives_32_pairs_and_64_singletons() -> None:
    sampler = ClassBatchSampler(SOP_LIKE, 128, 96, seed=1)
    assert sampler.class_sizes == [2] * 32 + [1] * 64
    for batch in sampler.batches(0):
        counts = Counter(SOP_LIKE[batch].tolist())
        assert sum(1 for v in counts.values() if v == 2) == 32 and sum(1 for v in counts.values() if v == 1) == 64
        pairs = [i for i in batch if counts[int(SOP_LIKE[i])] == 2]
        assert len(set(pairs)) == 64  # every class has >= 2 images, so a pair is two distinct images


def test_class_batches_are_deterministic_per_seed_and_epoch() -> None:
    a, b = ClassBatchSampler(SOP_LIKE, 24, 6, seed=5), ClassBatchSampler(SOP_LIKE, 24, 6, seed=5)
    assert a.batches(0) == b.batches(0)
    assert a.batches(0) != a.batches(1)
    assert ClassBatchSampler(SOP_LIKE, 24, 6, seed=6).batches(0) != a.batches(0)
    a.set_epoch(2)
    assert list(a) == b.batches(2)


def test_class_batches_cover_classes_evenly() -> None:
    labels = np.repeat(np.arange(40), 5)
    sampler = ClassBatchSampler(labels, 25, 10, seed=0)  # 8 batches x 10 classes = every class twice
    seen = Counter(int(c) for batch in sampler.batches(0) for c in set(labels[batch].tolist()))
    assert set(seen) == set(range(40)) and set(seen.values()) == {2}


def test_class_batches_resume_from_start_batch() -> None:
    sampler = ClassBatchSampler(SOP_LIKE, 32, 8, seed=3)
    full = sampler.batches(0)
    sampler.start_batch = 7
    assert len(sampler) == len(full) - 7
    assert list(sampler) == full[7:]
    assert sampler.start_batch == 0 and list(sampler) == full


@pytest.mark.parametrize("world", [2, 4, 8])
def test_ranks_take_contiguous_image_slices_of_one_global_batch(world: int) -> None:
    single = ClassBatchSampler(SOP_LIKE, 128, 96, seed=2)
    ranks = [ClassBatchSampler(SOP_LIKE, 128, 96, seed=2, num_replicas=world, rank=r) for r in range(world)]
    for b, whole in enumerate(single.batches(0)):
        parts = [rank.batches(0)[b] for rank in ranks]
        assert all(len(part) == 128 // world for part in parts)
        assert sum(parts, []) == whole


def test_world_size_must_divide_the_batch() -> None:
    with pytest.raises(UsageError) as info:
        ClassBatchSampler(SOP_LIKE, 12, 4, seed=0, num_replicas=5, rank=0)
    assert "12 images does not split over 5" in info.value.message
    assert info.value.hint == "use a world size that divides 12: 1, 2, 3, 4, 6, 12"


def test_bad_class_counts_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="cannot hold 20 classes"):
        ClassBatchSampler(SOP_LIKE, 16, 20, seed=0)
    with pytest.raises(UsageError, match="only 9 classes"):
        ClassBatchSampler(LABELS, 20, 10, seed=0)  # class 9 has a single image
    # one image per class is a valid batch (proxy losses), so single-image classes then count
    assert ClassBatchSampler(LABELS, 10, 10, seed=0).skipped_classes == 0


def test_small_classes_fill_their_share_with_replacement() -> None:
    labels = np.repeat(np.arange(4), [2, 2, 2, 20])
    sampler = ClassBatchSampler(labels, 16, 4, seed=0)
    counts = Counter(labels[sampler.batches(0)[0]].tolist())
    assert set(counts.values()) == {4}
