"""The fold ensemble embeds the test images as each fold model's own evaluation does: with the backbone's
preprocessing (a timm backbone's ImageNet mean/std, bicubic resize and crop), not the bare defaults."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dmlbench.config import load_config
from dmlbench.datasets import get_spec, open_prepared
from dmlbench.datasets.torch_data import build_dataset
from dmlbench.evaluation.embed import embed_dataset
from dmlbench.models import build_embedder
from dmlbench.paths import Places
from dmlbench.resolve import resolve_config
from dmlbench.tuning.finals import _embed


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_fold_models_see_the_test_images_with_their_preprocessing(digits_root: Path) -> None:
    overrides = ['model.backbone="timm:resnet10t"', "model.pretrained=false", "model.image_size=32"]
    spec = get_spec("digits", Places.of(digits_root))
    cfg = resolve_config(load_config(None, ["dataset='digits'", *overrides]), spec)
    prepared = open_prepared("digits", data_root=digits_root)
    rows = prepared.index[prepared.index["split"] == "test"].head(24)
    model = build_embedder(cfg.model, load_weights=False).eval()

    got, _ = _embed(model, cfg, prepared, rows, torch.device("cpu"), "ensemble fold 0", None)
    bare = build_dataset(prepared, rows, train=False, image_size=32, channels=cfg.model.in_channels)
    without, _ = embed_dataset(model, bare, device=torch.device("cpu"), task="bare", on_event=None)
    assert not np.allclose(got, without, atol=1e-4), "the preprocessing must matter here, or the test proves nothing"

    from dmlbench.datasets.torch_data import dataset_for_model

    evaluated, _ = embed_dataset(
        model, dataset_for_model(prepared, rows, cfg.model), device=torch.device("cpu"), task="evaluate", on_event=None
    )
    np.testing.assert_array_equal(got, evaluated)
