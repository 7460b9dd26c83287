"""Every registered loss: builds with defaults, runs forward/backward, validates its inputs the same way."""

from __future__ import annotations

import pytest
import torch

from dmlbench.errors import ConfigError, DmlbenchError, UnknownNameError
from dmlbench.losses import (
    LOSSES,
    ClusteringLoss,
    LiftedStructLoss,
    NPairsLoss,
    TripletLoss,
    build_loss,
)
from dmlbench.losses.base import MetricLoss

NAMES = LOSSES.names()
CONTEXT = {"embedding_dim": 5, "num_classes": 4}  # what the trainer passes; the proxy losses need it


def _build(name: str) -> MetricLoss:
    loss: MetricLoss = LOSSES.build(name, {}, **CONTEXT)
    return loss


def _tiny_batch(normalize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 5, generator=gen)
    if normalize:
        x = torch.nn.functional.normalize(x, dim=1)
    return x.requires_grad_(), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])


def test_registry_holds_the_four_losses() -> None:
    assert NAMES[:4] == ["clustering", "triplet", "lifted", "npairs"]
    assert LOSSES.get("clustering") is ClusteringLoss
    assert LOSSES.get("triplet") is TripletLoss
    assert LOSSES.get("lifted") is LiftedStructLoss
    assert LOSSES.get("npairs") is NPairsLoss


@pytest.mark.parametrize("name", NAMES)
def test_every_entry_builds_runs_and_is_documented(name: str) -> None:
    loss = _build(name)
    assert isinstance(loss, MetricLoss)
    doc = type(loss).__doc__
    assert doc is not None and len(doc.strip()) > 40
    assert all(value is not None for value in LOSSES.parameters(name).values())
    x, labels = _tiny_batch(type(loss).expects_normalized)
    value = loss(x, labels)
    assert value.ndim == 0 and bool(torch.isfinite(value))
    value.backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())
    empty = torch.zeros(0, 5, requires_grad=True)
    zero = loss(empty, torch.zeros(0, dtype=torch.int64))
    zero.backward()
    assert zero.item() == 0.0


def test_normalisation_convention() -> None:
    assert ClusteringLoss.expects_normalized and TripletLoss.expects_normalized
    assert not LiftedStructLoss.expects_normalized and not NPairsLoss.expects_normalized


def test_build_loss_passes_parameters_and_rejects_bad_ones() -> None:
    loss = build_loss("clustering", margin_multiplier=10.0, pam=False, margin_type="ami", nmi_average="geometric")
    assert isinstance(loss, ClusteringLoss)
    assert (loss.margin_multiplier, loss.pam, loss.margin_type, loss.nmi_average) == (10.0, False, "ami", "geometric")
    with pytest.raises(UnknownNameError, match="unknown loss 'triplett'"):
        build_loss("triplett")
    with pytest.raises(ConfigError, match="no parameter 'margn'"):
        build_loss("triplet", margn=0.2)
    with pytest.raises(ConfigError, match="cannot build loss 'npairs'"):
        build_loss("npairs", reg_lambda=-1.0)


BAD_INPUTS = [
    (torch.randn(4, 3), torch.tensor([0, 0, 1]), "3 labels"),
    (torch.randn(4), torch.tensor([0, 0, 1, 1]), r"shape \[N, D\]"),
    (torch.randn(4, 3, 1), torch.tensor([0, 0, 1, 1]), r"shape \[N, D\]"),
    (torch.randn(4, 3), torch.tensor([[0], [0], [1], [1]]), r"shape \[N\]"),
    (torch.randn(4, 3), torch.tensor([0.0, 0.0, 1.0, 1.0]), "integer"),
    (torch.randn(4, 3), torch.tensor([True, True, False, False]), "integer"),
    (torch.tensor([[0, 1], [1, 0]]), torch.tensor([0, 1]), "floating-point"),
    (torch.tensor([[0.0, float("nan")], [1.0, 0.0]]), torch.tensor([0, 1]), "NaN or inf"),
    (torch.tensor([[0.0, float("inf")], [1.0, 0.0]]), torch.tensor([0, 1]), "NaN or inf"),
    (torch.zeros(3, 0), torch.tensor([0, 1, 1]), "dimension 0"),
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("embeddings", "labels", "message"), BAD_INPUTS)
def test_invalid_inputs_raise_value_error(
    name: str, embeddings: torch.Tensor, labels: torch.Tensor, message: str
) -> None:
    loss = _build(name)
    with pytest.raises(ValueError, match=message) as info:
        loss(embeddings, labels)
    assert isinstance(info.value, DmlbenchError) and info.value.hint


@pytest.mark.parametrize("name", NAMES)
def test_label_dtype_and_values_do_not_matter(name: str) -> None:
    x, labels = _tiny_batch(True)
    x = x.detach().double()

    def fresh() -> MetricLoss:  # a class-indexed loss remembers labels: compare fresh, identical ones
        torch.manual_seed(0)
        return _build(name).double()

    base = fresh()(x, labels).item()
    for dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8):
        assert fresh()(x, (labels * 9 + 2).to(dtype)).item() == pytest.approx(base, rel=1e-12)
    if not list(fresh().parameters()):  # per-class parameters make the class order matter
        assert fresh()(x, -labels * 1000).item() == pytest.approx(base, rel=1e-12)  # order of classes reversed


@pytest.mark.parametrize("name", NAMES)
def test_half_precision_is_computed_in_float32(name: str) -> None:
    loss = _build(name)
    x, labels = _tiny_batch(True)
    half = loss(x.detach().to(torch.bfloat16), labels)
    assert half.dtype == torch.float32 and bool(torch.isfinite(half))
