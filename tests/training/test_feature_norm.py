"""Batch standardisation of the head's input: BatchNorm1d(affine=False) semantics, defaults, old runs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dmlbench.config import ModelConfig
from dmlbench.models import build_embedder, resolve_model_defaults
from dmlbench.models.embedder import BatchStandardize


def test_training_and_eval_match_batchnorm_without_affine_parameters() -> None:
    torch.manual_seed(0)
    ours, reference = BatchStandardize(6), nn.BatchNorm1d(6, affine=False)
    for _ in range(3):
        batch = (torch.randn(10, 6) * 3 + 5).requires_grad_(True)
        twin = batch.detach().clone().requires_grad_(True)
        weights = torch.randn(10, 6)
        (ours(batch) * weights).sum().backward()
        (reference(twin) * weights).sum().backward()
        assert batch.grad is not None and twin.grad is not None
        torch.testing.assert_close(batch.grad, twin.grad, rtol=1e-4, atol=1e-5)
    assert reference.running_mean is not None and reference.running_var is not None
    torch.testing.assert_close(ours.running_mean, reference.running_mean)
    torch.testing.assert_close(ours.running_var, reference.running_var)
    ours.eval(), reference.eval()
    probe = torch.randn(4, 6) + 5
    torch.testing.assert_close(ours(probe), reference(probe))


def test_a_non_finite_batch_leaves_the_running_statistics_alone() -> None:
    layer = BatchStandardize(3)
    layer(torch.randn(8, 3))
    before = (layer.running_mean.clone(), layer.running_var.clone())
    poisoned = torch.randn(8, 3)
    poisoned[0, 1] = float("inf")
    layer(poisoned)
    assert torch.isfinite(layer.running_mean).all() and torch.isfinite(layer.running_var).all()
    # The finite features still update; the poisoned one keeps its statistics.
    assert torch.equal(layer.running_mean[1], before[0][1]) and torch.equal(layer.running_var[1], before[1][1])
    assert not torch.equal(layer.running_mean[0], before[0][0])


def test_one_sample_batches_are_refused_in_training() -> None:
    with pytest.raises(ValueError, match="at least 2 samples"):
        BatchStandardize(3)(torch.randn(1, 3))


def test_random_trunks_default_to_batch_standardisation_and_trained_weights_do_not() -> None:
    scratch = resolve_model_defaults(ModelConfig(backbone="small_cnn"), 32, 1)
    pretrained = resolve_model_defaults(ModelConfig(backbone="googlenet"), 224, 3)
    chosen = resolve_model_defaults(ModelConfig(backbone="small_cnn", feature_norm="none"), 32, 1)
    assert (scratch.feature_norm, pretrained.feature_norm, chosen.feature_norm) == ("batch", "none", "none")


def test_standardised_features_open_the_cone_of_an_untrained_network() -> None:
    # The reason for the default: the untrained head maps post-ReLU features to nearly one direction.
    torch.manual_seed(0)
    images = torch.rand(64, 1, 16, 16)
    plain = build_embedder(ModelConfig(backbone="small_cnn", normalize=True, in_channels=1, feature_norm="none"))
    torch.manual_seed(0)
    centred = build_embedder(ModelConfig(backbone="small_cnn", normalize=True, in_channels=1, feature_norm="batch"))
    off_diagonal = ~torch.eye(64, dtype=torch.bool)
    with torch.no_grad():
        cone, opened = ((m(images) @ m(images).T)[off_diagonal].mean() for m in (plain, centred))
    assert cone > 0.9 and abs(float(opened)) < 0.2


def test_runs_recorded_before_feature_norm_existed_load_as_they_were_trained() -> None:
    legacy = ModelConfig(backbone="small_cnn", embedding_dim=8, normalize=True, in_channels=1)
    assert legacy.feature_norm is None
    keys = set(build_embedder(legacy).state_dict())
    assert not any(key.startswith("feature_norm.") for key in keys)
    with_norm = build_embedder(legacy.model_copy(update={"feature_norm": "batch"})).state_dict()
    assert set(with_norm) - keys == {"feature_norm.running_mean", "feature_norm.running_var"}
