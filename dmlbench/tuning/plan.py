"""A study's plan: every input checked, the base config resolved, the folds and the space fixed.

Building a plan writes nothing under the runs root (a generated dataset may be prepared in the data
root), so a rejected `dmlbench tune` leaves no journal, study or folder behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dmlbench.config import TrainConfig, config_to_dict, load_config, parse_set, validate_config
from dmlbench.errors import ConfigError, UsageError
from dmlbench.paths import check_name, child_path
from dmlbench.runsroot import TUNE_DIR
from dmlbench.tuning.options import TuneOptions
from dmlbench.tuning.space import Space, build_space, merged_space_file
from dmlbench.tuning.storage import default_storage

TUNE_FOLDER = TUNE_DIR


@dataclass(frozen=True)
class Plan:
    """Everything a worker needs to run trials of one study, and the finals after them."""

    options: TuneOptions
    study: str
    study_dir: Path
    storage: str
    base: TrainConfig  # resolved; trials and finals override the searched keys
    direction: Literal["maximize", "minimize"]
    folds: list[list[int] | None]  # the training classes of each fold; [None] with --folds 1
    epochs: int
    space: Space
    startup_trials: int

    @property
    def trials(self) -> int:
        return self.options.trials

    @property
    def steps(self) -> int:
        """Pruning steps per trial: one per epoch of each fold."""
        return self.epochs * len(self.folds)

    def signature(self) -> dict[str, Any]:
        """What must not change when a study is continued (the budget may grow)."""
        return {
            "loss": self.base.loss.name,
            "dataset": self.base.dataset,
            "metric": self.options.metric,
            "folds": self.options.folds,
            "base_config": json.loads(json.dumps(config_to_dict(self.base), sort_keys=True)),
            "space": self.space.describe(),
        }

    def trial_dir(self, number: int, fold: int) -> Path:
        folder = child_path(self.study_dir, f"trial-{number}", "trial folder")
        return folder / f"fold-{fold}" if len(self.folds) > 1 else folder

    def final_dir(self, seed: int) -> Path:
        return child_path(self.study_dir, f"final-seed{seed}", "final run folder")

    @property
    def ensemble_dir(self) -> Path:
        return child_path(self.study_dir, "ensemble", "ensemble folder")

    def config(
        self, params: dict[str, Any], *, run_id: str, seed: int | None = None, final: bool = False
    ) -> TrainConfig:
        """The base config with a trial's parameters; a final run trains on every training class."""
        data = config_to_dict(self.base)
        for key, value in self.space.overrides(params).items():
            node = data
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        data["run_id"] = run_id
        if seed is not None:
            data["seed"] = seed
        if final:
            data.setdefault("validation", {})["val_classes"] = 0.0
        return validate_config(data, f"trial parameters {params}")


def default_study_name(dataset: str, loss: str) -> str:
    from dmlbench.registry import name_slug

    return f"{dataset}-{name_slug(loss)}"


def default_startup(trials: int) -> int:
    """Random trials before TPE (and before the median pruner acts): a third of the budget, 3 to 10."""
    return max(3, min(10, trials // 3))


def make_plan(options: TuneOptions) -> Plan:
    """Check every input of `options` and fix the study's plan (one-line errors, nothing written to runs)."""
    from dmlbench.datasets import get_spec, open_or_prepare
    from dmlbench.datasets.splits import class_folds, held_out_classes
    from dmlbench.evaluation.metrics import higher_is_better, metric_info
    from dmlbench.losses import LOSSES
    from dmlbench.models import backbone_info
    from dmlbench.resolve import resolve_config

    LOSSES.get(options.loss)  # unknown loss: did-you-mean now
    metric_info(options.metric)
    study = check_name(options.study or default_study_name(options.dataset, options.loss), "study name")
    places = options.places
    spec = get_spec(options.dataset, places)
    flags = {"loss.name": options.loss, "dataset": options.dataset, "schedule.epochs": options.epochs}
    cfg = load_config(options.config_file, list(options.overrides), flags)
    cfg = cfg.model_copy(update={"seed": options.seed})
    cfg.validation.metric = options.metric
    cfg.validation.every = 1
    if options.folds == 1 and cfg.validation.val_classes <= 0:
        cfg.validation.val_classes = options.val_classes
    base = resolve_config(cfg, spec)
    if base.schedule.steps is not None:
        raise ConfigError(
            "tuning needs whole epochs (validation runs after each), not schedule.steps",
            hint="drop --set schedule.steps and use --epochs",
        )
    assert base.schedule.epochs is not None and base.sampler.classes_per_batch and base.sampler.samples_per_class

    prepared = open_or_prepare(options.dataset, places)
    index = prepared.index
    labels = index[index["split"] == "train"]["label"].to_numpy()
    classes = sorted(int(c) for c in set(labels.tolist()))
    folds: list[list[int] | None]
    if options.folds == 1:
        held = held_out_classes(labels, base.validation.val_classes, base.seed)
        folds, min_train = [None], len(classes) - len(held)
    else:
        parts = class_folds(labels, options.folds, base.seed)
        train_sets = [sorted(set(classes) - set(part)) for part in parts]
        folds, min_train = list(train_sets), min(len(f) for f in train_sets)

    fixed = [".".join(parse_set(item)[0]) for item in options.overrides]
    loss_cls = LOSSES.get(base.loss.name)
    assert base.model.backbone is not None
    space = build_space(
        merged_space_file(options.space_file),
        loss=base.loss.name,
        loss_parameters=list(LOSSES.parameters(base.loss.name)),
        backbone_kind="pretrained" if backbone_info(base.model.backbone).pretrained_by_default else "small",
        batch_size=base.sampler.classes_per_batch * base.sampler.samples_per_class,
        min_samples_per_class=int(getattr(loss_cls, "min_samples_per_class", 2)),
        min_train_classes=min_train,
        fixed=fixed,
        source=str(options.space_file) if options.space_file else "the packaged search space",
        declared=getattr(loss_cls, "search_space", None),
    )
    plan = Plan(
        options=options,
        study=study,
        study_dir=places.runs_root / TUNE_FOLDER / study,
        storage=options.storage or default_storage(places.runs_root),
        base=base,
        direction="maximize" if higher_is_better(options.metric) else "minimize",
        folds=folds,
        epochs=int(base.schedule.epochs),
        space=space,
        startup_trials=default_startup(options.trials) if options.startup_trials is None else options.startup_trials,
    )
    check_space_values(plan, num_classes=min_train)
    return plan


def check_space_values(plan: Plan, *, num_classes: int) -> None:
    """Build the config and the loss with every choice and both ends of every range, before the study exists.

    A value no trial can use (a negative lr, a margin the loss refuses, a PML argument that fails on a batch)
    found only at the first trial would leave a study created with that space, refusing the corrected command.
    """
    from dmlbench.losses import LOSSES

    source = str(plan.options.space_file) if plan.options.space_file else "the packaged search space"
    for name, dim in plan.space.dimensions.items():
        for value in dim.candidates():
            try:
                cfg = plan.config({name: value}, run_id="space-check")
                LOSSES.build(
                    cfg.loss.name, cfg.loss.kwargs(), embedding_dim=cfg.model.embedding_dim, num_classes=num_classes
                )
            except UsageError as err:  # ConfigError, and an unknown name in a choice (UnknownNameError)
                raise ConfigError(
                    f"{source}: {name} = {value!r} cannot be used: {err.message}",
                    hint=f"narrow {name} in the --space file to values the run accepts (nothing was written)",
                ) from None
