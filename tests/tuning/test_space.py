"""Search spaces: the packaged file, --space overrides, --set fixing a dimension, P x K choices, strict errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmlbench.errors import ConfigError, MissingInputError
from dmlbench.tuning.space import (
    PACKAGED,
    PK_KEY,
    Dimension,
    build_space,
    merged_space_file,
    read_space_file,
)

PAPER_LOSSES = ("clustering", "triplet", "lifted", "npairs")
PML_LOSSES = ("contrastive", "multisimilarity", "proxyanchor", "normsoftmax", "arcface", "supcon")


def _space(file_path: Path | None = None, loss: str = "triplet", **kw: object) -> object:
    from dmlbench.losses import LOSSES

    args: dict[str, object] = {
        "loss": loss,
        "loss_parameters": list(LOSSES.parameters(loss)),
        "backbone_kind": "small",
        "batch_size": 40,
        "min_samples_per_class": 2,
        "min_train_classes": 5,
    }
    args.update(kw)
    return build_space(merged_space_file(file_path), **args)  # type: ignore[arg-type]


def test_packaged_file_has_a_table_for_every_paper_and_pml_loss() -> None:
    space = read_space_file(PACKAGED)
    assert set(PAPER_LOSSES + PML_LOSSES) <= set(space.loss)
    assert set(space.optim) == {"small", "pretrained"}
    for table in space.optim.values():
        assert {"lr", "weight_decay", "head_lr_multiplier"} <= set(table)
        assert table["lr"].log


@pytest.mark.parametrize("loss", PAPER_LOSSES)
def test_packaged_tables_name_real_loss_parameters(loss: str) -> None:
    space = _space(loss=loss)
    loss_keys = [k for k in space.dimensions if k.startswith("loss.")]  # type: ignore[attr-defined]
    assert loss_keys, "each paper loss searches its own parameter"


def test_registered_pml_losses_match_their_tables() -> None:
    from dmlbench.losses import LOSSES

    registered = [name for name in PML_LOSSES if name in LOSSES]
    if not registered:
        pytest.skip("the PML-backed losses are not registered in this tree")
    for loss in registered:
        _space(loss=loss)


def test_pk_keeps_the_batch_size_and_fits_the_fold() -> None:
    space = _space(min_train_classes=5)
    dim = space.dimensions[PK_KEY]  # type: ignore[attr-defined]
    # 40 images: K in 2..32 dividing 40 with 2 <= P = 40/K <= 5 classes
    assert dim.choices == (8, 10, 20)
    assert space.overrides({PK_KEY: 10}) == {PK_KEY: 10, "sampler.classes_per_batch": 4}  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="no P x K batch of 40 images fits"):
        _space(min_train_classes=1)


def test_set_fixes_a_dimension() -> None:
    space = _space(fixed=["optim.lr", "sampler.classes_per_batch"])
    assert "optim.lr" not in space.dimensions  # type: ignore[attr-defined]
    assert PK_KEY not in space.dimensions  # type: ignore[attr-defined]
    assert "optim.weight_decay" in space.dimensions  # type: ignore[attr-defined]


def test_space_file_replaces_only_the_tables_it_defines(tmp_path: Path) -> None:
    path = tmp_path / "space.toml"
    path.write_text("[loss.triplet]\nmargin = { choices = [0.1, 0.2] }\n", encoding="utf-8")
    space = _space(path)
    assert space.dimensions["loss.margin"] == Dimension(choices=(0.1, 0.2))  # type: ignore[attr-defined]
    assert space.dimensions["optim.lr"].low == 1e-4  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "defines no tables"),
        ("[loss.triplet]\nmargin = { low = 2.0, high = 1.0 }\n", "low 2.0 must be below high 1.0"),
        ("[loss.triplet]\nmargin = { low = 0.0, high = 1.0, log = true }\n", "log range needs low > 0"),
        ("[loss.triplet]\nmargin = { low = 0.1 }\n", "needs both low and high"),
        ("[loss.triplet]\nmargin = { choices = [] }\n", "choices is empty"),
        ("[loss.triplet]\nmargin = { low = 0.1, high = 1.0, step = 2 }\n", "Extra inputs"),
        ("[optim.tiny]\nlr = { low = 0.1, high = 1.0 }\n", "backbone kind must be one of"),
        ("[optim.small]\nname = { choices = ['sgd'] }\n", "not a searchable optimizer key"),
        ("[loss.triplet\n", "not valid TOML"),
        ("[loss.triplet]\nmargn = { low = 0.1, high = 1.0 }\n", "has no parameter 'margn'"),
        ("[optim.small]\n[sampler]\n[loss.triplet]\n", "leaves nothing to search"),
    ],
)
def test_invalid_or_empty_spaces_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "space.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as info:
        _space(path)
    assert "\n" not in info.value.message


def test_missing_space_file(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match="does not exist"):
        merged_space_file(tmp_path / "nope.toml")


def test_suggest_uses_the_dotted_keys_as_optuna_names() -> None:
    import optuna

    space = _space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    params = space.suggest(trial)  # type: ignore[attr-defined]
    assert set(params) == set(trial.params) == set(space.dimensions)  # type: ignore[attr-defined]
    assert 1e-4 <= params["optim.lr"] <= 1e-2
