"""The vectorised clustering loss against the slow loop reference, its gradient and its degenerate cases."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from loss_reference import assign, cluster_inference, cluster_loss, gt_score

import dmlbench.losses.clustering as clustering_module
from dmlbench.losses import ClusteringLoss
from dmlbench.losses._distances import pairwise_distance

GREEDY_PATHS = {"dense": 10**9, "sparse": 0}  # SPARSE_MIN_N values forcing each greedy implementation


def _greedy_paths(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Iterate with the dense, then the sparse greedy step in force."""
    for name, threshold in GREEDY_PATHS.items():
        monkeypatch.setattr(clustering_module, "SPARSE_MIN_N", threshold)
        yield name


def _batch(rng: np.random.Generator, n: int, k: int, d: int, *, min_size: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """n points in k classes (each at least `min_size` points), shuffled; values non-contiguous."""
    min_size = min(min_size, n // k)
    labels = np.concatenate([np.repeat(np.arange(k), min_size), rng.integers(0, k, n - k * min_size)])
    labels = rng.permutation(labels) * 7 + 3
    centers = rng.normal(size=(k, d)) * 1.5
    x = centers[np.searchsorted(np.unique(labels), labels)] + rng.normal(size=(n, d))
    if rng.random() < 0.5:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return x, labels


def _tie_free(labels: np.ndarray) -> bool:
    """No class of exactly two members (the structural ties of losses.md §2.4)."""
    return bool(np.all(np.unique(labels, return_counts=True)[1] != 2))


CONFIGS = [
    # (margin_type, average, gamma, pam)
    ("nmi", "arithmetic", 1.0, True),
    ("nmi", "geometric", 10.0, True),
    ("nmi", "arithmetic", 0.5, False),
    ("ami", "arithmetic", 1.0, True),
    ("ari", "arithmetic", 10.0, True),
    ("vmeasure", "arithmetic", 1.0, True),
]


@pytest.mark.parametrize(("margin_type", "average", "gamma", "pam"), CONFIGS)
def test_float64_matches_reference_values_and_medoids(
    margin_type: str, average: str, gamma: float, pam: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(CONFIGS.index((margin_type, average, gamma, pam)))
    for _ in range(6):
        n = int(rng.integers(5, 15))
        k = int(rng.integers(2, max(3, n // 2)))
        x, labels = _batch(rng, n, k, int(rng.integers(2, 5)), min_size=3 if rng.random() < 0.5 else 1)
        loss = ClusteringLoss(margin_multiplier=gamma, pam=pam, margin_type=margin_type, nmi_average=average)
        xt, yt = torch.from_numpy(x), torch.from_numpy(labels)
        expected, medoids = cluster_loss(x, labels, gamma, pam=pam, margin_type=margin_type, average=average)
        for _path in _greedy_paths(monkeypatch):
            assert loss(xt, yt).item() == pytest.approx(expected, abs=1e-9, rel=1e-9)
            if _tie_free(labels):
                assert loss.inference(xt, yt).medoids.tolist() == medoids


@pytest.mark.parametrize("seed", range(4))
def test_float32_matches_reference_values(seed: int) -> None:
    """float32 embeddings: inference runs on the float32 distance matrix, so the reference gets it too."""
    rng = np.random.default_rng(100 + seed)
    for _ in range(4):
        n = int(rng.integers(6, 16))
        x, labels = _batch(rng, n, int(rng.integers(2, 6)), int(rng.integers(2, 8)))
        x32 = torch.from_numpy(x).float()
        dist = pairwise_distance(x32).double().numpy()
        got = ClusteringLoss(margin_multiplier=1.0)(x32, torch.from_numpy(labels)).item()
        expected, _ = cluster_loss(x, labels, 1.0, dist=dist)
        assert got == pytest.approx(expected, abs=1e-4, rel=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_ties_and_duplicates_match_reference_values(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Integer grids, duplicated points and two-member classes: many exact ties; loss values agree."""
    rng = np.random.default_rng(200 + seed)
    for _ in range(4):
        n = int(rng.integers(6, 14))
        k = int(rng.integers(2, n // 2 + 1))
        labels = rng.permutation(np.concatenate([np.repeat(np.arange(k), 2), rng.integers(0, k, n - 2 * k)]))
        x = rng.integers(-2, 3, size=(n, 2)).astype(np.float64)
        duplicates = rng.integers(0, n, size=(3, 2))
        x[duplicates[:, 0]] = x[duplicates[:, 1]]
        for dtype in (torch.float64, torch.float32):
            xt = torch.from_numpy(x).to(dtype)
            dist = pairwise_distance(xt).double().numpy()
            expected, _ = cluster_loss(x, labels, 1.0, dist=dist)
            for _path in _greedy_paths(monkeypatch):
                got = ClusteringLoss(margin_multiplier=1.0)(xt, torch.from_numpy(labels)).item()
                assert got == pytest.approx(expected, abs=1e-4, rel=1e-5)


def test_greedy_alone_matches_reference() -> None:
    rng = np.random.default_rng(7)
    x, labels = _batch(rng, 14, 4, 3, min_size=3)
    found = ClusteringLoss(margin_multiplier=2.0).inference(torch.from_numpy(x), torch.from_numpy(labels))
    dist = pairwise_distance(torch.from_numpy(x)).numpy()
    final, greedy = cluster_inference(dist, list(labels), 2.0)
    assert found.greedy_medoids.tolist() == greedy
    assert found.medoids.tolist() == final
    assert found.assignment.tolist() == assign(dist, final)
    assert found.gt_medoids.tolist() == gt_score(dist, list(labels))[1]


def test_gradient_is_that_of_facility_minus_gt_with_medoids_fixed() -> None:
    rng = np.random.default_rng(11)
    checked = 0
    for _ in range(5):
        x_np, labels_np = _batch(rng, 12, 3, 4, min_size=3)
        x = torch.from_numpy(x_np).requires_grad_()
        labels = torch.from_numpy(labels_np)
        loss_fn = ClusteringLoss(margin_multiplier=1.0)
        loss = loss_fn(x, labels)
        if loss.item() <= 0:
            continue
        (grad,) = torch.autograd.grad(loss, x)
        found = loss_fn.inference(x.detach(), labels)
        medoids = found.medoids.tolist()
        y = x.detach().clone().requires_grad_()
        # F(Ŝ) and F̃ from explicit differences, each point to its fixed medoid (zero terms left out)
        f_pred = -sum(
            torch.linalg.vector_norm(y[medoids[c]] - y[j])
            for j, c in enumerate(found.assignment.tolist())
            if medoids[c] != j
        )
        f_gt = torch.zeros((), dtype=torch.float64)
        classes = np.unique(labels_np)
        for c, m in zip(classes, found.gt_medoids.tolist(), strict=True):
            f_gt = f_gt - sum(torch.linalg.vector_norm(y[i] - y[m]) for i in np.flatnonzero(labels_np == c) if i != m)
        (expected,) = torch.autograd.grad(f_pred - f_gt, y)
        torch.testing.assert_close(grad, expected, rtol=1e-7, atol=1e-9)
        checked += 1
    assert checked >= 3


def test_inactive_hinge_gives_zero_gradient() -> None:
    x = torch.tensor([[0.0, 0.0], [0.0, 0.1], [5.0, 5.0], [5.0, 5.1]], dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    loss = ClusteringLoss(margin_multiplier=1.0)(x, labels)
    assert loss.item() == 0.0
    loss.backward()
    assert x.grad is not None and torch.count_nonzero(x.grad) == 0


@pytest.mark.parametrize("margin_type", ["nmi", "ami", "ari", "vmeasure"])
def test_degenerate_batches_give_zero(margin_type: str) -> None:
    gen = torch.Generator().manual_seed(0)
    loss_fn = ClusteringLoss(margin_multiplier=10.0, margin_type=margin_type)
    for n, labels in [(9, torch.full((9,), 4)), (7, torch.arange(7) * 3), (1, torch.tensor([2]))]:
        x = torch.randn(n, 5, generator=gen, dtype=torch.float64, requires_grad=True)
        loss = loss_fn(x, labels)
        assert loss.item() == pytest.approx(0.0, abs=1e-12), (n, labels)
        loss.backward()
        assert x.grad is not None and bool(torch.isfinite(x.grad).all())


def test_empty_batch_gives_attached_zero() -> None:
    x = torch.zeros(0, 4, requires_grad=True)
    loss = ClusteringLoss()(x, torch.zeros(0, dtype=torch.int64))
    loss.backward()
    assert loss.item() == 0.0 and x.grad is not None and x.grad.shape == (0, 4)


def test_label_values_and_dtypes_do_not_matter() -> None:
    rng = np.random.default_rng(5)
    x, labels = _batch(rng, 12, 3, 3)
    xt = torch.from_numpy(x)
    _, contiguous = np.unique(labels, return_inverse=True)
    base = ClusteringLoss()(xt, torch.from_numpy(contiguous)).item()
    for dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8):
        assert ClusteringLoss()(xt, torch.from_numpy(contiguous * 5 + 1).to(dtype)).item() == base


def test_pam_can_change_the_medoids_and_is_switchable() -> None:
    """PAM (on by default) refines the greedy solution on some batch; with pam=False it is skipped."""
    rng = np.random.default_rng(3)
    changed = False
    for _ in range(20):
        x, labels = _batch(rng, 14, 4, 3, min_size=3)
        found = ClusteringLoss(margin_multiplier=1.0).inference(torch.from_numpy(x), torch.from_numpy(labels))
        no_pam = ClusteringLoss(margin_multiplier=1.0, pam=False).inference(
            torch.from_numpy(x), torch.from_numpy(labels)
        )
        assert torch.equal(no_pam.medoids, no_pam.greedy_medoids)
        assert torch.equal(no_pam.greedy_medoids, found.greedy_medoids)
        changed |= not torch.equal(found.medoids, found.greedy_medoids)
    assert changed


@pytest.mark.parametrize(
    "kwargs",
    [
        {"margin_multiplier": -1.0},
        {"margin_multiplier": float("nan")},
        {"margin_type": "const"},
        {"nmi_average": "max"},
        {"pam": 1},
    ],
)
def test_invalid_parameters_raise_value_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ClusteringLoss(**kwargs)  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_larger_batches_match_reference(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    for margin_type in ("nmi", "ami", "ari", "vmeasure"):
        x, labels = _batch(rng, 40, 10, 8, min_size=3)
        got = ClusteringLoss(margin_multiplier=1.0, margin_type=margin_type)(
            torch.from_numpy(x), torch.from_numpy(labels)
        )
        expected, _ = cluster_loss(x, labels, 1.0, margin_type=margin_type)
        assert got.item() == pytest.approx(expected, abs=1e-9, rel=1e-9)


def test_pam_runs_all_five_sweeps_when_needed() -> None:
    """A batch (found by search) whose PAM is still moving medoids after two sweeps."""
    rng = np.random.default_rng(358)
    n, k = int(rng.integers(8, 20)), int(rng.integers(2, 6))
    labels = rng.integers(0, k, n)
    x = rng.normal(size=(n, 2))
    gamma = float(rng.choice([1.0, 10.0, 30.0]))
    found = ClusteringLoss(margin_multiplier=gamma).inference(torch.from_numpy(x), torch.from_numpy(labels))
    final, _ = cluster_inference(pairwise_distance(torch.from_numpy(x)).numpy(), list(labels), gamma)
    assert found.medoids.tolist() == final
