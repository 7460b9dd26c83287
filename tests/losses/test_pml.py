"""PML-backed losses: same values as PML itself, documented defaults, class rows, pml:<ClassName>, search spaces."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

from dmlbench.config import load_config
from dmlbench.errors import ConfigError, UnknownNameError
from dmlbench.losses import LOSSES, LossConfigError, LossInputError, MetricLoss
from dmlbench.losses.pml import PMLLoss, pml_class_names
from dmlbench.resolve import resolve_config

NAMED = ["contrastive", "multisimilarity", "proxyanchor", "normsoftmax", "arcface", "supcon"]
PROXY = ["proxyanchor", "normsoftmax", "arcface"]
DIM, CLASSES = 6, 5

# The documented defaults (docs/losses/*.md) and where they come from.
DEFAULTS = {
    "contrastive": {"pos_margin": 0.0, "neg_margin": 1.0},  # Hadsell et al. / PML, chosen on glyphs validation
    "multisimilarity": {"alpha": 17.97, "beta": 75.66, "base": 0.77, "epsilon": 0.39},  # Reality Check, + miner
    "proxyanchor": {"margin": 0.1, "alpha": 32.0, "lr_multiplier": 100.0},  # Kim et al. 2020
    "normsoftmax": {"temperature": 0.1087, "lr_multiplier": 100.0},  # Reality Check (temperature)
    "arcface": {"margin": 23.22, "scale": 100.0, "lr_multiplier": 100.0},  # Reality Check (margin, scale)
    "supcon": {"temperature": 0.1},  # Khosla et al. 2020
}


def _build(name: str, params: dict[str, Any] | None = None) -> MetricLoss:
    loss: MetricLoss = LOSSES.build(name, params or {}, embedding_dim=DIM, num_classes=CLASSES)
    return loss


def _batch(seed: int = 0, labels: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.tensor(labels if labels is not None else [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 0, 2])
    # Clustered by class, so miners have easy pairs to drop and hinges are partly inactive.
    centers = torch.randn(int(y.max()) + 1, DIM, generator=gen, dtype=torch.float64)
    noise = torch.randn(len(y), DIM, generator=gen, dtype=torch.float64)
    x = torch.nn.functional.normalize(centers[y] + 0.6 * noise, dim=1)
    return x.requires_grad_(), y


def _reference(name: str, loss: MetricLoss) -> tuple[torch.nn.Module, torch.nn.Module | None]:
    """PML's own modules with the same settings, and the dmlbench loss's parameters copied in."""
    d = DEFAULTS[name]
    miner = None
    if name == "contrastive":
        ref: torch.nn.Module = pml_losses.ContrastiveLoss(pos_margin=d["pos_margin"], neg_margin=d["neg_margin"])
    elif name == "multisimilarity":
        ref = pml_losses.MultiSimilarityLoss(alpha=d["alpha"], beta=d["beta"], base=d["base"])
        miner = pml_miners.MultiSimilarityMiner(epsilon=d["epsilon"])
    elif name == "proxyanchor":
        ref = pml_losses.ProxyAnchorLoss(CLASSES, DIM, margin=d["margin"], alpha=d["alpha"])
    elif name == "normsoftmax":
        ref = pml_losses.NormalizedSoftmaxLoss(CLASSES, DIM, temperature=d["temperature"])
    elif name == "arcface":
        ref = pml_losses.ArcFaceLoss(CLASSES, DIM, margin=d["margin"], scale=d["scale"])
    else:
        ref = pml_losses.SupConLoss(temperature=d["temperature"])
    assert isinstance(loss, PMLLoss)
    ref.load_state_dict(loss.loss.state_dict())
    return ref.double(), miner


def test_the_six_baselines_are_registered_next_to_the_four_losses() -> None:
    assert LOSSES.names()[:4] == ["clustering", "triplet", "lifted", "npairs"]
    assert LOSSES.names()[4:] == NAMED


@pytest.mark.parametrize("name", NAMED)
def test_defaults_are_the_documented_ones(name: str) -> None:
    assert LOSSES.parameters(name) == DEFAULTS[name]
    cls = LOSSES.get(name)
    assert cls.__doc__ and len(cls.__doc__) > 80
    assert cls.expects_normalized  # PML normalises inside its distance; the embedder then does the same
    assert cls.min_samples_per_class == (1 if name in PROXY else 2)


@pytest.mark.parametrize("name", NAMED)
def test_value_and_gradient_equal_pml_on_the_same_batch(name: str) -> None:
    loss = _build(name).double()
    ref, miner = _reference(name, loss)
    x, y = _batch()
    value = loss(x, y)
    (grad,) = torch.autograd.grad(value, x)
    x2 = x.detach().clone().requires_grad_()
    # Labels 0..4 are their own class rows here: rows are taken in increasing label order.
    expected = ref(x2, y, miner(x2, y) if miner is not None else None)
    (expected_grad,) = torch.autograd.grad(expected, x2)
    assert float(value.detach()) > 0
    if miner is not None:  # the miner must matter on this batch, or the comparison would not test it
        assert not torch.isclose(ref(x2, y), expected)
    torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", NAMED)
def test_empty_batch_and_batch_without_pairs_backpropagate(name: str) -> None:
    loss = _build(name)
    empty = torch.zeros(0, DIM, requires_grad=True)
    zero = loss(empty, torch.zeros(0, dtype=torch.int64))
    zero.backward()
    assert zero.item() == 0.0
    x = torch.nn.functional.normalize(torch.randn(3, DIM), dim=1).requires_grad_()
    value = loss(x, torch.tensor([0, 1, 2]))  # one image per class: no positive pair
    value.backward()
    assert bool(torch.isfinite(value)) and x.grad is not None


@pytest.mark.parametrize("name", PROXY)
def test_proxy_losses_own_trainable_class_parameters(name: str) -> None:
    loss = _build(name)
    params = dict(loss.named_parameters())
    assert len(params) == 1
    (weights,) = params.values()
    assert weights.numel() == CLASSES * DIM
    assert loss.param_lr_multiplier == 100.0
    assert set(loss.state_dict()) == {"class_table", *params}
    x, y = _batch()
    loss(x.float(), y).backward()
    assert weights.grad is not None and bool(weights.grad.abs().sum() > 0)
    assert _build(name, {"lr_multiplier": 10.0}).param_lr_multiplier == 10.0


def test_pair_losses_have_no_parameters() -> None:
    for name in ("contrastive", "multisimilarity", "supcon"):
        loss = _build(name)
        assert not list(loss.parameters()) and not loss.state_dict()


def test_proxy_losses_need_the_class_count_and_size() -> None:
    with pytest.raises(ConfigError, match="cannot build loss 'proxyanchor'"):
        LOSSES.build("proxyanchor", {})
    with pytest.raises(ConfigError, match="num_classes must be a positive integer"):
        LOSSES.build("proxyanchor", {}, num_classes=0, embedding_dim=4)


def test_dataset_labels_get_stable_class_rows() -> None:
    """CUB's train labels are 1..100: PML alone would index a proxy row 100 of 100."""
    loss = _build("proxyanchor")
    x, _ = _batch()
    assert isinstance(loss, PMLLoss)
    loss(x.float()[:4], torch.tensor([107, 107, 3, 3]))
    assert loss.get_buffer("class_table")[:2].tolist() == [3, 107]
    loss(x.float()[:6], torch.tensor([50, 50, 107, 107, 9, 9]))
    assert loss.get_buffer("class_table")[:4].tolist() == [3, 107, 9, 50]
    rows = loss._class_rows(torch.tensor([9, 3, 50, 107]))
    assert rows.tolist() == [2, 0, 3, 1]
    with pytest.raises(LossInputError, match="2 new classes but only 1"):
        loss(x.float()[:4], torch.tensor([1, 1, 2, 2]))


def test_state_dict_restores_proxies_and_class_rows_exactly() -> None:
    torch.manual_seed(0)
    trained = _build("proxyanchor")
    x, y = _batch()
    optimizer = torch.optim.SGD(trained.parameters(), lr=0.5)
    for _ in range(3):
        optimizer.zero_grad()
        trained(x.float().detach(), y + 40).backward()
        optimizer.step()
    torch.manual_seed(123)  # a fresh loss starts from other proxies
    restored = _build("proxyanchor")
    assert not torch.equal(restored.state_dict()["loss.proxies"], trained.state_dict()["loss.proxies"])
    restored.load_state_dict(trained.state_dict())
    for key, value in trained.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value)
    assert torch.equal(restored(x.float(), y + 40), trained(x.float(), y + 40))


def test_bad_hyperparameters_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        _build("supcon", {"temperature": 0.0})
    with pytest.raises(ConfigError, match="neg_margin must be a finite number"):
        _build("contrastive", {"neg_margin": "wide"})
    with pytest.raises(ConfigError, match="no parameter 'alpah'"):
        _build("multisimilarity", {"alpah": 2.0})
    assert issubclass(LossConfigError, ConfigError)


# -- pml:<ClassName> ------------------------------------------------------------------------------------


def test_any_pml_loss_by_class_name_with_kwargs_and_miner() -> None:
    loss = _build("pml:CircleLoss", {"kwargs": {"m": 0.25, "gamma": 64}, "miner": "PairMarginMiner"})
    assert isinstance(loss, PMLLoss) and isinstance(loss.loss, pml_losses.CircleLoss)
    assert (loss.loss.m, loss.loss.gamma) == (0.25, 64)
    assert isinstance(loss.miner, pml_miners.PairMarginMiner)
    x, y = _batch()
    loss(x, y).backward()
    assert x.grad is not None and bool(x.grad.abs().sum() > 0)
    assert LOSSES.get("pml:CircleLoss") is LOSSES.get("pml:CircleLoss")
    assert "pml:CircleLoss" in LOSSES and "pml:CircleLos" not in LOSSES


def test_pml_losses_needing_classes_get_them_from_the_context() -> None:
    loss = _build("pml:SoftTripleLoss", {"kwargs": {"centers_per_class": 2}})
    assert isinstance(loss, PMLLoss) and loss.class_indexed
    assert loss.loss.fc.shape == (DIM, CLASSES * 2)
    assert LOSSES.get("pml:SoftTripleLoss").min_samples_per_class == 1
    x, y = _batch()
    loss(x.float(), y + 1000).backward()


def test_pml_object_arguments_by_name() -> None:
    loss = _build(
        "pml:TripletMarginLoss",
        {"kwargs": {"margin": 0.1, "distance": {"name": "LpDistance", "p": 1}, "reducer": "MeanReducer"}},
    )
    assert isinstance(loss, PMLLoss)
    distance = loss.loss.distance
    assert type(distance).__name__ == "LpDistance" and getattr(distance, "p", None) == 1
    assert type(loss.loss.reducer).__name__ == "MeanReducer"


def test_unknown_pml_names_suggest_close_ones() -> None:
    with pytest.raises(UnknownNameError) as info:
        LOSSES.get("pml:CirclLoss")
    assert "'CircleLoss'" in (info.value.hint or "")
    with pytest.raises(UnknownNameError) as info:
        _build("pml:CircleLoss", {"miner": "PairMarginMinr"})
    assert "'PairMarginMiner'" in (info.value.hint or "")
    with pytest.raises(ConfigError) as config_info:
        _build("pml:CircleLoss", {"kwargs": {"gama": 10}})
    assert "no argument 'gama'" in config_info.value.message and "'gamma'" in (config_info.value.hint or "")
    with pytest.raises(UnknownNameError) as info:
        LOSSES.get("contrastiv")
    assert "'contrastive'" in (info.value.hint or "") and "pml:<ClassName>" in (info.value.hint or "")


def test_pml_losses_dmlbench_cannot_drive_are_clear_errors() -> None:
    with pytest.raises(ConfigError) as info:
        _build("pml:ManifoldLoss")
    assert "needs the argument 'l'" in info.value.message and "loss.kwargs.l=" in (info.value.hint or "")
    # Given `l`, it still cannot score a labelled batch: found when built, not at the first training step.
    with pytest.raises(ConfigError, match="fails on a batch: ValueError: labels are ref_labels are not supported"):
        _build("pml:ManifoldLoss", {"kwargs": {"l": DIM}})
    for name, match in [
        ("pml:SelfSupervisedLoss", "two augmented views"),
        ("pml:CrossBatchMemory", "wraps another loss"),
        ("pml:BaseMetricLossFunction", "not a loss over"),
    ]:
        with pytest.raises(ConfigError, match=match):
            LOSSES.get(name)
    with pytest.raises(ConfigError, match="cannot be set from a config"):
        _build("pml:ProxyAnchorLoss", {"kwargs": {"weight_init_func": "normal"}})
    with pytest.raises(ConfigError, match="miner_kwargs given without a miner"):
        _build("pml:CircleLoss", {"miner_kwargs": {"epsilon": 0.1}})
    assert "SelfSupervisedLoss" not in pml_class_names() and "CircleLoss" in pml_class_names()


def test_config_shape_of_a_pml_loss() -> None:
    from dmlbench.datasets import get_spec

    cfg = load_config(
        None,
        ["loss.kwargs.m=0.3", "loss.miner=MultiSimilarityMiner", "loss.miner_kwargs.epsilon=0.2"],
        {"dataset": "digits", "loss.name": "pml:CircleLoss"},
    )
    resolved = resolve_config(cfg, get_spec("digits"))
    kwargs = resolved.loss.kwargs()
    assert kwargs["kwargs"] == {"m": 0.3} and kwargs["miner"] == "MultiSimilarityMiner"
    assert kwargs["miner_kwargs"] == {"epsilon": 0.2}
    loss = _build(resolved.loss.name, kwargs)
    assert isinstance(loss, PMLLoss) and loss.loss.m == 0.3 and loss.miner is not None


# (their search spaces for `dmlbench tune` live in dmlbench/tuning/spaces.toml: tests/tuning/test_space.py)


# -- proxy anchor on glyphs with the plain head: what the collapse is and is not ----------------------------


def test_sparse_even_labels_map_to_rows_exactly_as_pml_on_contiguous_labels() -> None:
    """glyphs' train labels are 0, 2, ..., 350 for 176 proxies: the rows must be a consistent bijection.

    The first batch holds every class (so row r = label r x 2); later batches of a few classes must give
    PML's own value and gradients on the labels divided by two, proxies included.
    """
    classes, dim = 176, 8
    loss = LOSSES.build("proxyanchor", {}, num_classes=classes, embedding_dim=dim).double()
    assert isinstance(loss, PMLLoss)
    gen = torch.Generator().manual_seed(1)
    every = torch.arange(0, 2 * classes, 2)
    loss(torch.nn.functional.normalize(torch.randn(classes, dim, generator=gen, dtype=torch.float64), dim=1), every)
    assert torch.equal(loss.get_buffer("class_table"), every)
    ref = pml_losses.ProxyAnchorLoss(classes, dim, margin=0.1, alpha=32.0).double()
    ref.load_state_dict(loss.loss.state_dict())
    labels = torch.tensor([300, 300, 4, 4, 350, 350, 0, 0])
    x = torch.nn.functional.normalize(torch.randn(8, dim, generator=gen, dtype=torch.float64), dim=1)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    value, expected = loss(x1, labels), ref(x2, labels // 2)
    value.backward()
    expected.backward()
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x1.grad, x2.grad)
    proxies = loss.loss.proxies
    assert isinstance(proxies, torch.nn.Parameter) and proxies.grad is not None
    torch.testing.assert_close(proxies.grad, ref.proxies.grad)
    assert int((proxies.grad.abs().sum(dim=1) > 0).sum()) == classes  # every proxy is a negative


def _cone_gradient_share(name: str) -> float:
    """How much of the per-sample gradient is the batch's common direction, on embeddings in a narrow cone.

    An untrained SmallCNN + plain Linear head (`model.feature_norm = "none"`) maps glyphs into such a cone
    (mean cosine 0.997): its features are post-ReLU averages, so W·mean dominates every embedding.
    """
    classes, dim = 176, 64
    gen = torch.Generator().manual_seed(0)
    loss = LOSSES.build(name, {}, num_classes=classes, embedding_dim=dim)
    labels = torch.arange(0, 32, 2).repeat_interleave(4)  # 16 classes x 4, as glyphs' P x K batches
    center = torch.randn(dim, generator=gen)
    z = (center + 0.08 * torch.randn(len(labels), dim, generator=gen)).requires_grad_()
    x = torch.nn.functional.normalize(z, dim=1)
    assert float((x @ x.T).mean().detach()) > 0.99
    (grad,) = torch.autograd.grad(loss(x, labels), z)
    return float(grad.mean(dim=0).norm() / grad.norm(dim=1).mean())


def test_in_a_narrow_cone_proxy_anchor_pushes_the_whole_batch_one_way_and_pair_losses_do_not() -> None:
    """The glyphs collapse (docs/losses/proxyanchor.md): random proxies sit outside the cone, so each
    class's pull is mostly the same tangent shift; a Linear head on near-identical features turns a
    common gradient into a common output shift, which moves the cone instead of opening it. A pair
    loss's gradients are differences between samples and cancel over the batch.
    """
    proxy, pair = _cone_gradient_share("proxyanchor"), _cone_gradient_share("contrastive")
    assert proxy > 0.1
    assert pair < 0.05
    assert proxy > 10 * pair


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"kwargs": {"margin": "abc"}}, "fails on a batch: TypeError"),  # accepted by PML, fails when scored
        ({"miner": "TripletMarginMiner", "miner_kwargs": {"margin": "x"}}, "fails on a batch"),
        ({"kwargs": {"distance": {"name": "LpDistance", "p": "two"}}}, "pml:TripletMarginLoss"),
        ({"kwargs": {"triplets_per_anchor": -5}}, "pml:TripletMarginLoss"),
    ],
)
def test_values_pml_fails_on_are_config_errors_when_built(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _build("pml:TripletMarginLoss", params)


def test_a_pml_constructor_raising_anything_is_a_config_error() -> None:
    # A negative class count reaches torch.empty inside PML: a RuntimeError, not a TypeError/ValueError.
    with pytest.raises(ConfigError, match="cannot build pml:ProxyAnchorLoss: RuntimeError"):
        _build("pml:ProxyAnchorLoss", {"kwargs": {"num_classes": -2}})


def test_building_a_pml_loss_leaves_the_global_rng_alone() -> None:
    """The probe step draws from its own generator: a run seeded before building trains as it did."""
    torch.manual_seed(3)
    _build("pml:CircleLoss", {"miner": "PairMarginMiner"})
    after_build = torch.rand(4)
    torch.manual_seed(3)
    assert torch.equal(torch.rand(4), after_build)
