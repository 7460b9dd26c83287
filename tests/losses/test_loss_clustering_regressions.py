"""Degenerate batches for the clustering loss: duplicates, collapse, tiny distances, uneven classes.

A reported mid-training crash (`IndexError: index 40 is out of bounds for dimension 0 with size 40`,
P=5 x K=8) could not be reproduced by fuzzing; these fixed batches pin the cases that fuzzing covered:
loss values against the loop reference on small batches, and on P x K sized batches (both greedy
paths) finite forward/backward with distinct in-range medoids in every cluster.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from loss_reference import cluster_loss

import dmlbench.losses.clustering as clustering_module
from dmlbench.losses import ClusteringLoss
from dmlbench.losses._distances import pairwise_distance

Batch = tuple[np.ndarray, np.ndarray]


def _unit(x: np.ndarray) -> np.ndarray:
    unit: np.ndarray = x / np.linalg.norm(x, axis=1, keepdims=True)
    return unit


def _labels(rng: np.random.Generator, n: int, k: int, *, even: bool) -> np.ndarray:
    """k classes, all present: n/k each when `even`, otherwise one big class and the rest tiny."""
    if even and n % k == 0:
        return rng.permutation(np.repeat(np.arange(k), n // k))
    return rng.permutation(np.concatenate([np.arange(k), np.zeros(n - k, dtype=np.int64)]))


def _identical(rng: np.random.Generator, labels: np.ndarray, d: int) -> np.ndarray:
    return np.tile(_unit(rng.normal(size=(1, d))), (labels.size, 1))


def _few_locations(rng: np.random.Generator, labels: np.ndarray, d: int) -> np.ndarray:
    """Every point sits on one of 2 or 3 locations, shared across classes (many zero distances)."""
    locations = _unit(rng.normal(size=(int(rng.integers(2, 4)), d)))
    return locations[rng.integers(0, len(locations), labels.size)]


def _class_collapsed(rng: np.random.Generator, labels: np.ndarray, d: int) -> np.ndarray:
    """Each class collapsed to one point; one point per batch moved onto another class."""
    x: np.ndarray = _unit(rng.normal(size=(int(labels.max()) + 1, d)))[labels]
    x[0] = x[-1]
    return x


def _duplicates(rng: np.random.Generator, labels: np.ndarray, d: int) -> np.ndarray:
    """Random points with about half the rows exact copies of other rows."""
    x = _unit(rng.normal(size=(labels.size, d)))
    copies = rng.integers(0, labels.size, size=(labels.size // 2, 2))
    x[copies[:, 0]] = x[copies[:, 1]]
    return x


def _tiny(rng: np.random.Generator, labels: np.ndarray, d: int) -> np.ndarray:
    """Two locations plus 1e-7 noise: distances at the float32 resolution of the Gram expansion."""
    return _unit(_few_locations(rng, labels, d) + 1e-7 * rng.normal(size=(labels.size, d)))


def _near(rng: np.random.Generator, labels: np.ndarray, d: int) -> np.ndarray:
    """A collapsed embedding: one direction plus 1e-3 class offsets and 1e-4 noise."""
    offsets = 1e-3 * rng.normal(size=(int(labels.max()) + 1, d))
    return _unit(1.0 + offsets[labels] + 1e-4 * rng.normal(size=(labels.size, d)))


MAKERS: dict[str, Callable[[np.random.Generator, np.ndarray, int], np.ndarray]] = {
    "identical": _identical,
    "few_locations": _few_locations,
    "class_collapsed": _class_collapsed,
    "duplicates": _duplicates,
    "tiny": _tiny,
    "near": _near,
}
MARGIN_TYPES = ["nmi", "ami", "ari", "vmeasure"]


def _batch(kind: str, seed: int, n: int, k: int, *, even: bool, d: int = 4) -> Batch:
    rng = np.random.default_rng(seed)
    labels = _labels(rng, n, k, even=even)
    return MAKERS[kind](rng, labels, d), labels


@pytest.mark.parametrize("kind", list(MAKERS))
def test_degenerate_small_batches_match_reference(kind: str) -> None:
    """float32 embeddings, PAM on and off, margin types in turn: loss values equal the loop reference's."""
    seed = list(MAKERS).index(kind)
    n, k, even = (8, 2, True) if seed % 2 == 0 else (7, 3, False)
    x, labels = _batch(kind, seed, n, k, even=even)
    x32 = torch.from_numpy(x).float()
    # the reference gets the float32 distances the loss sees, so both break ties on the same numbers
    dist = pairwise_distance(x32).double().numpy()
    margin_type = MARGIN_TYPES[seed % len(MARGIN_TYPES)]
    for pam in (True, False):
        gamma = 1.0 if pam else 10.0
        loss = ClusteringLoss(margin_multiplier=gamma, pam=pam, margin_type=margin_type)
        got = loss(x32, torch.from_numpy(labels)).item()
        expected, _ = cluster_loss(x, labels, gamma, pam=pam, margin_type=margin_type, dist=dist)
        assert got == pytest.approx(expected, abs=1e-4, rel=1e-5), (kind, margin_type, pam)


def _check_forward_backward(loss_fn: ClusteringLoss, x: np.ndarray, labels: np.ndarray) -> float:
    """Forward and backward run, everything is finite and the medoids are k distinct in-range indices."""
    xt = torch.from_numpy(x).float().requires_grad_()
    yt = torch.from_numpy(labels)
    loss = loss_fn(xt, yt)
    loss.backward()
    assert xt.grad is not None
    assert bool(torch.isfinite(loss)) and bool(torch.isfinite(xt.grad).all())
    assert loss.item() >= 0.0
    found = loss_fn.inference(xt.detach(), yt)
    k = int(np.unique(labels).size)
    for medoids in (found.medoids, found.greedy_medoids):
        assert medoids.numel() == k and torch.unique(medoids).numel() == k
        assert int(medoids.min()) >= 0 and int(medoids.max()) < labels.size
    assert torch.equal(torch.bincount(found.assignment, minlength=k) > 0, torch.ones(k, dtype=torch.bool))
    return float(loss.item())


@pytest.mark.parametrize("kind", list(MAKERS))
@pytest.mark.parametrize(("n", "k"), [(40, 5), (40, 20), (192, 6)])
def test_degenerate_pk_batches_run_on_both_greedy_paths(
    kind: str, n: int, k: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """P x K sized batches, even or one big class (and N at the dense/sparse switch): both paths agree."""
    seed = 1000 + list(MAKERS).index(kind)
    x, labels = _batch(kind, seed, n, k, even=seed % 2 == 0, d=16)
    margin_type = MARGIN_TYPES[seed % len(MARGIN_TYPES)]
    values = []
    for threshold in (10**9, 0):  # dense, then sparse greedy step
        monkeypatch.setattr(clustering_module, "SPARSE_MIN_N", threshold)
        for pam in (True, False):
            loss_fn = ClusteringLoss(margin_multiplier=1.0, pam=pam, margin_type=margin_type)
            values.append(_check_forward_backward(loss_fn, x, labels))
    assert values[:2] == pytest.approx(values[2:], abs=1e-6)
