"""TrainConfig: precedence, --set parsing, did-you-mean, resolution from the dataset, TOML round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmlbench.config import LossConfig, TrainConfig, dump_toml, load_config, parse_set
from dmlbench.errors import ConfigError, MissingInputError, UnknownNameError
from dmlbench.resolve import resolve_config

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.toml"))


def _resolved(cfg: TrainConfig) -> TrainConfig:
    from dmlbench.datasets import get_spec

    return resolve_config(cfg, get_spec(cfg.dataset))


def test_precedence_flags_over_set_over_file_over_defaults(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text('seed = 3\n[optim]\nlr = 0.5\nname = "sgd"\n[schedule]\nepochs = 7\n')
    cfg = load_config(file, ["optim.lr=0.25", "schedule.epochs=9"], {"schedule.epochs": 11, "seed": None})
    assert cfg.optim.lr == 0.25  # --set beats the file
    assert cfg.schedule.epochs == 11  # a flag beats --set
    assert cfg.seed == 3  # a flag left at None does not override
    assert cfg.optim.name == "sgd"
    assert cfg.model.embedding_dim == 64  # schema default


def test_explicit_false_flag_overrides_file(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text("[model]\npretrained = true\n")
    assert load_config(file, [], {"model.pretrained": False}).model.pretrained is False


def test_set_values_are_toml_literals() -> None:
    assert parse_set("optim.lr=1e-4") == (["optim", "lr"], 1e-4)
    assert parse_set("schedule.cosine=true") == (["schedule", "cosine"], True)
    assert parse_set("optim.name=adamw") == (["optim", "name"], "adamw")
    assert parse_set('run_id="a b"') == (["run_id"], "a b")
    assert parse_set("validation.metric=recall@4") == (["validation", "metric"], "recall@4")
    with pytest.raises(ConfigError):
        parse_set("optim.lr")
    with pytest.raises(ConfigError):
        parse_set("optim.lr=[1,")


def test_set_value_is_schema_validated() -> None:
    with pytest.raises(ConfigError, match="optim.lr"):
        load_config(None, ["optim.lr=-1"])
    with pytest.raises(ConfigError, match="schedule.epochs"):
        load_config(None, ['schedule.epochs="many"'])


def test_a_refused_flag_value_names_its_key_and_the_command_line() -> None:
    from dmlbench.config import COMMAND_LINE, ConfigKeyError

    with pytest.raises(ConfigKeyError) as info:
        load_config(None, [], {"schedule.epochs": 0})
    assert (info.value.key, info.value.source) == ("schedule.epochs", COMMAND_LINE)
    assert "'schedule.epochs' in the --epochs option" in info.value.from_source("the --epochs option").message


def test_unknown_key_suggests_the_right_one() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, ["optim.lrr=0.1"])
    assert "optim.lrr" in info.value.message
    assert "'lr'" in (info.value.hint or "")
    with pytest.raises(ConfigError) as top:
        load_config(None, ["sede=1"])
    assert "'seed'" in (top.value.hint or "")


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_resolution_fills_dataset_defaults() -> None:
    digits = _resolved(load_config(None, [], {"dataset": "digits", "loss.name": "triplet"}))
    assert digits.model.backbone == "small_cnn" and digits.model.in_channels == 1 and digits.model.image_size == 8
    assert (digits.sampler.classes_per_batch, digits.sampler.samples_per_class) == (5, 8)
    assert digits.optim.name == "adamw" and digits.model.pretrained is False
    assert digits.run_id == "digits-triplet-small_cnn-seed0"
    cub = _resolved(load_config(None, [], {"dataset": "cub200"}))
    glyphs = _resolved(load_config(None, [], {}))  # the default dataset: epochs measured for it
    assert glyphs.dataset == "glyphs" and glyphs.schedule.epochs == 3 and glyphs.model.image_size == 32
    # The paper's protocol (UNVERIFIED values, exposed as defaults).
    assert (cub.optim.name, cub.optim.lr, cub.optim.head_lr_multiplier) == ("rmsprop", 1e-5, 10.0)
    assert cub.model.backbone == "googlenet" and cub.model.pretrained is True and cub.model.image_size == 224


def test_loss_kwargs_are_checked_and_defaults_written() -> None:
    from dmlbench.losses import LOSSES

    for name in ("clustering", "triplet", "lifted", "npairs"):
        resolved = _resolved(load_config(None, [], {"loss.name": name}))
        # a key the [loss] schema declares (the clustering loss's γ schedule) keeps the schema's default
        declared = set(LossConfig.model_fields)
        defaults = {k: v for k, v in LOSSES.parameters(name).items() if v is not None and k not in declared}
        defaults.pop("embedding_dim", None)
        defaults.pop("num_classes", None)
        written = resolved.loss.model_dump()
        assert {k: written.get(k) for k in defaults} == defaults  # every default is in the stored config
        LOSSES.build(name, resolved.loss.kwargs())  # and what the loss receives builds it
    with pytest.raises(ConfigError, match="no parameter"):
        _resolved(load_config(None, ["loss.not_a_param=1"]))
    with pytest.raises(UnknownNameError, match="clusterin"):
        _resolved(load_config(None, [], {"loss.name": "clusterin"}))
    with pytest.raises(UnknownNameError) as backbone:
        _resolved(load_config(None, ["model.backbone=resnet5"]))
    assert "resnet50" in (backbone.value.hint or "")


def test_loss_flag_replaces_the_file_loss_table(tmp_path: Path) -> None:
    from dmlbench.losses import LOSSES

    name, value = next((k, v) for k, v in LOSSES.parameters("clustering").items() if isinstance(v, (int, float)))
    file = tmp_path / "c.toml"
    file.write_text(
        f'[loss]\nname = "clustering"\n{name} = {value!r}\n'.replace("True", "true").replace("False", "false")
    )
    assert load_config(file, [], {"loss.name": "triplet"}).loss.kwargs() == {}


def test_resolved_config_round_trips_through_toml(tmp_path: Path) -> None:
    resolved = _resolved(load_config(None, ["schedule.cosine=true", "optim.grad_clip=5.0"], {"loss.name": "lifted"}))
    path = tmp_path / "config.toml"
    path.write_text(dump_toml(resolved))
    again = load_config(path)
    assert again == resolved
    assert _resolved(again) == resolved  # resolving twice changes nothing


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_example_config_validates_and_resolves(path: Path) -> None:
    resolved = _resolved(load_config(path))
    assert resolved.run_id and resolved.model.backbone and resolved.optim.lr


def test_there_are_example_configs_for_each_kind() -> None:
    names = {p.name for p in CONFIGS}
    assert any(n.startswith("digits") for n in names) and any(n.startswith("cub200") for n in names)
