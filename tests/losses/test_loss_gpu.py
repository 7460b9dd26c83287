"""CUDA gives the same losses, gradients and medoids as the CPU (run through the device tool)."""

from __future__ import annotations

import pytest
import torch

import dmlbench.losses.clustering as clustering
from dmlbench.losses import LOSSES, ClusteringLoss, build_loss
from dmlbench.losses._distances import pairwise_distance
from dmlbench.losses._scores import ScoreTables


@pytest.mark.gpu
@pytest.mark.parametrize("name", LOSSES.names())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(name: str, dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    for n, classes in [(16, 4), (64, 16), (128, 64)]:
        x = torch.nn.functional.normalize(torch.randn(n, 32, generator=gen, dtype=dtype), dim=1)
        labels = torch.randperm(n, generator=gen) % classes
        loss = build_loss(name)
        cpu_x = x.clone().requires_grad_()
        cpu = loss(cpu_x, labels)
        cpu.backward()
        cuda_x = x.cuda().requires_grad_()
        cuda = loss(cuda_x, labels.cuda())
        cuda.backward()
        tol = 1e-4 if dtype == torch.float32 else 1e-9
        assert cuda.item() == pytest.approx(cpu.item(), rel=tol, abs=tol)
        assert cpu_x.grad is not None and cuda_x.grad is not None
        torch.testing.assert_close(cuda_x.grad.cpu(), cpu_x.grad, rtol=tol, atol=tol)


@pytest.mark.gpu
@pytest.mark.parametrize("margin_type", ["nmi", "ami", "ari", "vmeasure"])
def test_cuda_medoids_match_cpu(margin_type: str) -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(96, 16, generator=gen, dtype=torch.float64)
    labels = torch.randperm(96, generator=gen) % 24  # 4 per class: no structural two-member ties
    loss = ClusteringLoss(margin_multiplier=1.0, margin_type=margin_type)
    cpu = loss.inference(x, labels)
    cuda = loss.inference(x.cuda(), labels.cuda())
    assert cuda.medoids.device.type == "cuda"
    assert cuda.medoids.cpu().tolist() == cpu.medoids.tolist()
    assert cuda.score == pytest.approx(cpu.score, abs=1e-12)


@pytest.mark.gpu
@pytest.mark.parametrize(("n", "k"), [(128, 64), (256, 64)])
def test_cuda_greedy_and_pam_sweeps_never_sync(n: int, k: int) -> None:
    """CUDA's own sync detector raises on any host sync inside the greedy loop and the PAM sweeps."""
    gen = torch.Generator().manual_seed(n + k)
    x = torch.nn.functional.normalize(torch.randn(n, 64, generator=gen, dtype=torch.float64), dim=1).cuda()
    labels = (torch.randperm(n, generator=gen) % k).cuda()
    dist = pairwise_distance(x)
    tables = ScoreTables(labels, k)
    tol = clustering.TIE_RTOL * (float(dist.sum(dim=1).max()) + 1.0)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        greedy = clustering._greedy(dist, labels, k, 1.0, tables, tol, sync_free=True)
        medoids = clustering._pam_sync_free(dist, greedy, 1.0, tables, tol, early_stop=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    cpu_tables = ScoreTables(labels.cpu(), k)
    cpu_greedy = clustering._greedy(dist.cpu(), labels.cpu(), k, 1.0, cpu_tables, tol)
    assert greedy.cpu().tolist() == cpu_greedy.tolist()
    assert medoids.cpu().tolist() == clustering._pam(dist.cpu(), cpu_greedy, 1.0, cpu_tables, tol).tolist()
