"""Search spaces of a plugin loss: its `search_space` attribute, or a `[loss."<name>"]` table of --space FILE."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmlbench.errors import ConfigError
from dmlbench.tuning.space import build_space, merged_space_file

PLUGIN = Path(__file__).parents[1] / "losses" / "plugins" / "contract_losses.py"
NAME = f"{PLUGIN}:GoodLoss"


def _build(space_file: Path | None, declared: object) -> dict[str, str]:
    space = build_space(
        merged_space_file(space_file),
        loss=NAME,
        loss_parameters=["margin"],
        backbone_kind="small",
        batch_size=40,
        min_samples_per_class=2,
        min_train_classes=5,
        declared=declared,
    )
    return space.describe()


def test_the_class_attribute_is_the_space_unless_a_file_names_the_loss(tmp_path: Path) -> None:
    from dmlbench.losses import LOSSES

    declared = getattr(LOSSES.get(NAME), "search_space", None)
    assert _build(None, declared)["loss.margin"] == "0.2..1.5"
    override = tmp_path / "space.toml"
    override.write_text(f'[loss."{NAME}"]\nmargin = {{ low = 0.05, high = 0.1 }}\n')
    assert _build(override, declared)["loss.margin"] == "0.05..0.1"


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ({"margin": {"low": 2.0, "high": 1.0}}, "low 2.0 must be below"),
        (["margin"], "not a mapping"),
        ({"margn": {"low": 0.1, "high": 1.0}}, "has no parameter 'margn'"),
    ],
)
def test_a_bad_declared_space_is_one_config_error(declared: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _build(None, declared)
