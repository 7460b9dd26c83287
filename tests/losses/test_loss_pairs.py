"""Triplet, lifted and npairs against their loop references; gradcheck; degenerate batches."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from loss_reference import distances, lifted_struct, npairs, triplet_semihard

from dmlbench.losses import LiftedStructLoss, NPairsLoss, TripletLoss
from dmlbench.losses._distances import pairwise_distance
from dmlbench.losses.base import MetricLoss
from dmlbench.losses.npairs import consecutive_pairs

CASES: list[tuple[str, Callable[[], MetricLoss], Callable[[np.ndarray, np.ndarray], float]]] = [
    ("triplet", lambda: TripletLoss(), lambda x, y: triplet_semihard(x, list(y))),
    ("triplet-0.2", lambda: TripletLoss(margin=0.2), lambda x, y: triplet_semihard(x, list(y), 0.2)),
    ("triplet-l2", lambda: TripletLoss(squared=False), lambda x, y: triplet_semihard(x, list(y), squared=False)),
    ("lifted", lambda: LiftedStructLoss(), lambda x, y: lifted_struct(x, list(y))),
    ("lifted-0.5", lambda: LiftedStructLoss(margin=0.5), lambda x, y: lifted_struct(x, list(y), 0.5)),
    ("npairs", lambda: NPairsLoss(), lambda x, y: npairs(x, list(y))),
    ("npairs-0.1", lambda: NPairsLoss(reg_lambda=0.1), lambda x, y: npairs(x, list(y), 0.1)),
]
IDS = [case[0] for case in CASES]


def _random_batches(seed: int, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(count):
        n = int(rng.integers(1, 18))
        labels = rng.integers(0, int(rng.integers(1, n + 1)), n) * 4 - 2
        x = rng.normal(size=(n, int(rng.integers(1, 6)))) * float(rng.choice([0.2, 1.0, 3.0]))
        if rng.random() < 0.5:
            x = x / np.linalg.norm(x, axis=1, keepdims=True)
        batches.append((x, labels))
    return batches


@pytest.mark.parametrize(("name", "make", "reference"), CASES, ids=IDS)
def test_matches_loop_reference(
    name: str, make: Callable[[], MetricLoss], reference: Callable[[np.ndarray, np.ndarray], float]
) -> None:
    loss = make()
    for x, labels in _random_batches(seed=IDS.index(name), count=25):
        expected = reference(x, labels)
        got64 = loss(torch.from_numpy(x), torch.from_numpy(labels)).item()
        assert got64 == pytest.approx(expected, rel=1e-9, abs=1e-9)
        got32 = loss(torch.from_numpy(x).float(), torch.from_numpy(labels)).item()
        assert got32 == pytest.approx(expected, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize(("name", "make", "reference"), CASES, ids=IDS)
def test_gradcheck(name: str, make: Callable[[], MetricLoss], reference: object) -> None:
    gen = torch.Generator().manual_seed(IDS.index(name))
    loss = make()
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3])
    for scale in (0.5, 2.0):
        x = (torch.randn(8, 3, generator=gen, dtype=torch.float64) * scale).requires_grad_()
        assert loss(x, labels).item() > 0
        assert torch.autograd.gradcheck(lambda e: loss(e, labels), (x,))


def test_distance_primitive_matches_direct_differences() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(20, 6, generator=gen, dtype=torch.float64)
    x[5] = x[3]
    for squared in (True, False):
        dist = pairwise_distance(x, squared=squared)
        np.testing.assert_allclose(dist.numpy(), distances(x.numpy(), squared=squared), atol=1e-7)
        assert torch.equal(dist, dist.T)
        assert torch.count_nonzero(torch.diagonal(dist)) == 0
    xg = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(pairwise_distance(xg).sum(), xg)  # duplicates: zero distance, finite gradient
    assert bool(torch.isfinite(grad).all())


@pytest.mark.parametrize("loss", [TripletLoss(), LiftedStructLoss(), NPairsLoss()], ids=["triplet", "lifted", "npairs"])
def test_no_positive_pair_gives_zero_with_zero_gradient(loss: MetricLoss) -> None:
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    value = loss(x, torch.arange(5))
    value.backward()
    assert value.item() == 0.0
    assert x.grad is not None and torch.count_nonzero(x.grad) == 0


def test_triplet_single_class_is_margin_plus_positive_distance() -> None:
    """With no negative, the reference's hardest negative is 0: loss = mean(margin + d_ap) (documented)."""
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    d = pairwise_distance(x, squared=True)
    expected = (1.0 + d[~torch.eye(3, dtype=torch.bool)]).mean()
    assert TripletLoss()(x, torch.tensor([4, 4, 4])).item() == pytest.approx(expected.item())


def test_lifted_is_finite_where_the_reference_gives_nan() -> None:
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    single = LiftedStructLoss()(x, torch.zeros(6, dtype=torch.int64))
    single.backward()
    assert single.item() == 0.0 and x.grad is not None and torch.count_nonzero(x.grad) == 0
    # two classes 60 apart: TF overflows exp(88.7) into NaN; the true loss is 0
    far = torch.tensor([[0.0, 0.0], [0.0, 0.1], [60.0, 0.0], [60.0, 0.1]], requires_grad=True)
    value = LiftedStructLoss()(far, torch.tensor([0, 0, 1, 1]))
    value.backward()
    assert value.item() == 0.0 and far.grad is not None and bool(torch.isfinite(far.grad).all())
    # scaled N(0,1) embeddings: large but finite, and equal to the reference
    big = np.random.default_rng(0).normal(size=(10, 4)) * 30
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    got = LiftedStructLoss()(torch.from_numpy(big).float(), torch.from_numpy(labels)).item()
    assert np.isfinite(got) and got == pytest.approx(lifted_struct(big, list(labels)), rel=1e-4)


def test_npairs_pairs_consecutive_members_of_each_class() -> None:
    labels = torch.tensor([5, 3, 5, 3, 5, 9, 5, 3, 9, 1])
    anchors, positives = consecutive_pairs(labels)
    # class 5 at 0,2,4,6 -> (0,2),(4,6); class 3 at 1,3,7 -> (1,3), 7 unused; class 9 -> (5,8); class 1 unused
    assert anchors.tolist() == [0, 1, 4, 5]
    assert positives.tolist() == [2, 3, 6, 8]


def test_npairs_two_per_class_is_the_contrib_formula() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(8, 4, generator=gen, dtype=torch.float64)
    labels = torch.tensor([2, 7, 2, 0, 7, 5, 0, 5])  # anchors 0,1,3,5 ; positives 2,4,6,7
    a, p = x[[0, 1, 3, 5]], x[[2, 4, 6, 7]]
    xent = torch.nn.functional.cross_entropy(a @ p.T, torch.arange(4))
    reg = 0.25 * 0.002 * (a.square().sum(1).mean() + p.square().sum(1).mean())
    assert NPairsLoss()(x, labels).item() == pytest.approx((xent + reg).item(), rel=1e-12)


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (TripletLoss, {"margin": float("inf")}),
        (TripletLoss, {"squared": "yes"}),
        (LiftedStructLoss, {"margin": "1"}),
        (NPairsLoss, {"reg_lambda": -0.1}),
    ],
)
def test_invalid_parameters_raise_value_error(cls: type[MetricLoss], kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        cls(**kwargs)
