"""The CUDA inference path of the clustering loss: no host reads in its loops, same results as the CPU path.

There is no CUDA device in CI, so host syncs are detected on CPU at the operator level: a dispatch mode
records every aten operator that, on a CUDA tensor, makes the host wait for the device (a value read, an
output whose size depends on the data, a host-to-device copy of a fresh tensor). C++-internal reads (e.g.
indexing with a 0-d tensor calls `.item()`) go through the dispatcher too, so they are seen as well. The
detector is shown to fire on the frozen pre-change implementation, so a passing test means something.
The CPU default path is pinned bit-identical to that frozen copy (tests/losses/clustering_frozen.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import clustering_frozen as frozen
import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import dmlbench.losses.clustering as clustering
from dmlbench.losses import ClusteringLoss
from dmlbench.losses._distances import pairwise_distance
from dmlbench.losses._scores import ScoreTables

aten = torch.ops.aten
# operators that block the host on a CUDA tensor: value reads and data-sized outputs
_HOST_SYNCS = {
    aten._local_scalar_dense,  # .item(), bool(), int(), float(), and indexing with a 0-d tensor
    aten.equal,
    aten.is_nonzero,
    aten.allclose,
    aten.nonzero,
    aten.argwhere,
    aten._unique,
    aten._unique2,
    aten.unique_dim,
    aten.unique_consecutive,
    aten.unique_dim_consecutive,
    aten.masked_select,
    aten.bincount,  # CUDA sizes its output from max(input), read on the host
    aten.repeat_interleave,
    aten.lift_fresh,  # torch.tensor(...) inside a loop: a pageable host-to-device copy on CUDA
}
_INDEXING = {aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_}


def _bool_index(args: tuple[Any, ...]) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices or ())


class HostSyncs(TorchDispatchMode):
    """Records the name of every operator that would make the host wait for a CUDA device."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        packet = func.overloadpacket
        if packet in _HOST_SYNCS or (packet in _INDEXING and _bool_index(args)):
            self.calls.append(str(func))
        return func(*args, **(kwargs or {}))


@contextmanager
def _python_reads(calls: list[str]) -> Iterator[None]:
    """Also count the Python-level reads that copy without an aten operator on CPU (tolist, numpy)."""
    originals = {name: getattr(torch.Tensor, name) for name in ("tolist", "numpy")}

    def counting(name: str) -> Callable[..., Any]:
        def wrapper(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            calls.append(f"Tensor.{name}")
            return originals[name](self, *args, **kwargs)

        return wrapper

    try:
        for name in originals:
            setattr(torch.Tensor, name, counting(name))
        yield
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


def _counted(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, list[str]]:
    detector = HostSyncs()
    with _python_reads(detector.calls), detector:
        result = fn(*args, **kwargs)
    return result, detector.calls


def _setup(
    n: int, k: int, seed: int, margin_type: str = "nmi"
) -> tuple[torch.Tensor, torch.Tensor, ScoreTables, float]:
    """What facility_inference builds before its loops (host reads allowed there): dist, labels, tables, tol."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(n, 16, generator=gen, dtype=torch.float64), dim=1)
    labels = torch.randperm(n, generator=gen) % k
    dist = pairwise_distance(x)
    tables = ScoreTables(labels, k, margin_type)
    tol = clustering.TIE_RTOL * (float(dist.sum(dim=1).max()) + 1.0)
    return dist, labels, tables, tol


@pytest.mark.parametrize(
    ("margin_type", "n", "k"),
    # 200: above SPARSE_MIN_N, where the CPU path takes the sparse step
    [("nmi", 24, 6), ("ami", 24, 6), ("ari", 24, 6), ("vmeasure", 24, 6), ("nmi", 200, 50)],
)
def test_greedy_loop_makes_no_host_reads(margin_type: str, n: int, k: int) -> None:
    dist, labels, tables, tol = _setup(n, k, seed=n, margin_type=margin_type)
    chosen, calls = _counted(clustering._greedy, dist, labels, k, 1.0, tables, tol, sync_free=True)
    assert calls == []
    assert chosen.tolist() == clustering._greedy(dist, labels, k, 1.0, tables, tol).tolist()


@pytest.mark.parametrize("margin_type", ["nmi", "ami", "ari", "vmeasure"])
def test_pam_rounds_make_no_host_reads(margin_type: str) -> None:
    dist, labels, tables, tol = _setup(40, 10, seed=3, margin_type=margin_type)
    greedy = clustering._greedy(dist, labels, 10, 1.0, tables, tol)
    expected = clustering._pam(dist, greedy, 1.0, tables, tol).tolist()
    fixed, calls = _counted(clustering._pam_sync_free, dist, greedy, 1.0, tables, tol, chunk=None)
    assert calls == [] and fixed.tolist() == expected
    # in chunks: exactly one scalar read per chunk of rounds, and nothing else
    for chunk in (1, 4):
        chunked, calls = _counted(clustering._pam_sync_free, dist, greedy, 1.0, tables, tol, chunk=chunk)
        assert set(calls) == {"aten._local_scalar_dense.default"}
        assert len(calls) <= clustering.PAM_SWEEPS * math.ceil(11 / chunk)
        assert chunked.tolist() == expected


def test_the_detector_fires_on_the_previous_implementation() -> None:
    """The pre-change loops read the host (0-d indexing, bincount, nonzero, unique): the detector sees them."""
    dist, labels, tables, tol = _setup(200, 50, seed=5)
    greedy, greedy_calls = _counted(frozen._greedy, dist, labels, 50, 1.0, tables, tol)
    _, pam_calls = _counted(frozen._pam, dist, greedy, 1.0, tables, tol)
    assert "aten._local_scalar_dense.default" in greedy_calls and "aten.bincount.default" in greedy_calls
    assert "aten._unique2.default" in greedy_calls and "aten.nonzero.default" in pam_calls
    # the CPU default of the current code keeps those shortcuts, and the detector sees them there too
    _, cpu_calls = _counted(clustering._pam, dist, greedy, 1.0, tables, tol)
    assert "aten.nonzero.default" in cpu_calls


def _batches(seed: int, count: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Random, clustered, gridded (many exact ties) and duplicated batches, float32 and float64.

    The first batch has N = 200, above SPARSE_MIN_N (the CPU's sparse greedy step); the others N 2..64.
    """
    rng = np.random.default_rng(seed)
    for i in range(count):
        n = 200 if i == 0 else int(rng.choice([2, 5, 12, 33, 64])) if i % 3 else int(rng.integers(2, 40))
        k = (
            int(rng.integers(1, n + 1))
            if i % 4 == 2
            else max(1, n // int(rng.choice([4, 8]) if i == 0 else rng.choice([2, 3, 4, 8])))
        )
        labels = rng.permutation(np.concatenate([np.arange(k), rng.integers(0, k, n - k)]))
        kind = i % 4
        if kind == 0:
            x = rng.normal(size=(n, 8))
        elif kind == 1:
            x = rng.normal(size=(k, 8))[labels] * 1.5 + rng.normal(size=(n, 8))
        elif kind == 2:
            x = rng.integers(-2, 3, size=(n, 2)).astype(np.float64)
        else:
            x = rng.normal(size=(n, 4))
            copies = rng.integers(0, n, size=(n // 2, 2))
            x[copies[:, 0]] = x[copies[:, 1]]
        if rng.random() < 0.5:
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        dtype = torch.float32 if rng.random() < 0.5 else torch.float64
        yield torch.from_numpy(x).to(dtype), torch.from_numpy(labels * 3 + 1)


CONFIGS = [
    {"margin_multiplier": 1.0},
    {"margin_multiplier": 10.0, "margin_type": "ami"},
    {"margin_multiplier": 0.5, "margin_type": "ari"},
    {"margin_multiplier": 1.0, "margin_type": "vmeasure", "nmi_average": "geometric"},
    {"margin_multiplier": 3.0, "pam": False},
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(map(str, c.values())))
def test_cpu_default_is_bit_identical_to_the_previous_implementation(config: dict[str, Any]) -> None:
    loss_fn = ClusteringLoss(**config)
    options = {key: value for key, value in config.items() if key != "margin_multiplier"}
    for x, labels in _batches(CONFIGS.index(config), 10):
        contiguous = torch.unique(labels, return_inverse=True)[1]
        found = loss_fn.inference(x, labels)
        old = frozen.facility_inference(
            pairwise_distance(x), contiguous, margin_multiplier=config["margin_multiplier"], **options
        )
        for field in ("medoids", "greedy_medoids", "gt_medoids", "assignment"):
            assert torch.equal(getattr(found, field), getattr(old, field)), field
        assert found.score == old.score
        new_x, old_x = x.clone().requires_grad_(), x.clone().requires_grad_()
        new_loss = loss_fn(new_x, labels)
        old_loss = frozen.loss_value(old_x, contiguous, config["margin_multiplier"], **options)
        assert new_loss.item() == old_loss.item()
        new_loss.backward()
        old_loss.backward()
        assert new_x.grad is not None and old_x.grad is not None and torch.equal(new_x.grad, old_x.grad)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(map(str, c.values())))
def test_sync_free_path_gives_the_cpu_results(config: dict[str, Any]) -> None:
    """The CUDA path, run on CPU: same medoids and scores (its sums run in another order: equal within 1e-12)."""
    options = {key: value for key, value in config.items() if key != "margin_multiplier"}
    gamma = config["margin_multiplier"]
    for x, labels in _batches(100 + CONFIGS.index(config), 10):
        contiguous = torch.unique(labels, return_inverse=True)[1]
        dist = pairwise_distance(x)
        cpu = clustering.facility_inference(dist, contiguous, margin_multiplier=gamma, **options)
        fixed = clustering.facility_inference(dist, contiguous, margin_multiplier=gamma, sync_free=True, **options)
        assert fixed.greedy_medoids.tolist() == cpu.greedy_medoids.tolist()
        assert fixed.medoids.tolist() == cpu.medoids.tolist()
        assert fixed.score == pytest.approx(cpu.score, abs=1e-12)
