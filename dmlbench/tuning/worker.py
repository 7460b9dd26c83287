"""Running trials: open the study, ask under the study lock, train each fold, tell the outcome.

Ask-and-tell rather than `study.optimize(n_trials=...)`: each worker counts the study's finished and
live trials under one lock before asking, so N workers end with exactly `--trials` finished trials
(`MaxTrialsCallback` stops a worker only after its own trial ends, which overshoots with several).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from dmlbench.errors import ConfigError
from dmlbench.events import Event, EventHandler, emit
from dmlbench.rundir import RunDir
from dmlbench.tuning.plan import Plan
from dmlbench.tuning.storage import (
    OWNER_ATTR,
    RUN_DIR_ATTR,
    ask_lock,
    mark_run_abandoned,
    open_storage,
    owner_record,
    staleness,
)
from dmlbench.utils.redact import redact

logger = logging.getLogger(__name__)
SIGNATURE_ATTR = "dmlbench"


def open_study(plan: Plan, *, create: bool) -> Any:
    """The study in its storage (created when `create`), checked to be this plan's study."""
    import optuna

    if create and plan.options.storage is None:
        plan.options.places.runs_root.mkdir(parents=True, exist_ok=True)  # the default journal lives there
    storage = open_storage(plan.storage)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if plan.study not in names and not create:
        raise ConfigError(f"study {plan.study!r} is not in {redact(plan.storage)}", hint="run `dmlbench tune` first")
    study = optuna.create_study(
        storage=storage,
        study_name=plan.study,
        direction=plan.direction,
        sampler=_sampler(plan, 0),
        pruner=_pruner(plan),
        load_if_exists=True,
    )
    signature = plan.signature()
    stored = study.user_attrs.get(SIGNATURE_ATTR)
    if stored is None:
        if study.trials:
            raise ConfigError(
                f"study {plan.study!r} in {redact(plan.storage)} was not started by dmlbench tune",
                hint="pick another --study name",
            )
        study.set_user_attr(SIGNATURE_ATTR, signature)
    elif stored != signature:
        changed = sorted(k for k in signature if stored.get(k) != signature[k])
        raise ConfigError(
            f"study {plan.study!r} was started with other settings ({', '.join(changed)} differ)",
            hint="continue it with the same options (only --trials may grow), or pick another --study name",
        )
    return study


def _sampler(plan: Plan, asked: int) -> Any:
    """TPE, seeded from the study seed and the number of trials asked so far.

    A fresh seed per ask keeps each trial's draw deterministic while never repeating the random
    start-up points after a resume or in another worker (one shared seed would draw them again).
    """
    import optuna

    return optuna.samplers.TPESampler(
        seed=(plan.options.seed * 1_000_003 + asked) % 2**31, n_startup_trials=plan.startup_trials, constant_liar=True
    )


def _pruner(plan: Plan) -> Any:
    import optuna

    if not plan.options.prune:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=plan.startup_trials, n_warmup_steps=0)


@dataclass(frozen=True)
class Counts:
    complete: int
    pruned: int
    failed: int
    running: int

    @property
    def finished(self) -> int:
        return self.complete + self.pruned


def counts(study: Any) -> Counts:
    from optuna.trial import TrialState

    states = [t.state for t in study.get_trials(deepcopy=False)]
    return Counts(
        complete=states.count(TrialState.COMPLETE),
        pruned=states.count(TrialState.PRUNED),
        failed=states.count(TrialState.FAIL),
        running=states.count(TrialState.RUNNING),
    )


def reap_stale(study: Any, plan: Plan) -> int:
    """Mark RUNNING trials of dead workers FAIL and enqueue their parameters again; how many were reaped."""
    from optuna.trial import TrialState

    reaped = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        verdict = staleness(trial.user_attrs)
        if not verdict.stale:
            continue
        logger.info("trial %d of %s is stale (%s): failed, re-asked", trial.number, plan.study, verdict.reason)
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        if trial.params:
            study.enqueue_trial(dict(trial.params), user_attrs={"dmlbench_retry_of": trial.number})
        for fold in range(len(plan.folds)):
            mark_run_abandoned(RunDir(plan.trial_dir(trial.number, fold)))
        reaped += 1
    return reaped


class _PruningHook:
    """Feeds each epoch's validation metric to the trial; raises TrialPruned when the pruner says so."""

    def __init__(self, plan: Plan, trial: Any, fold: int) -> None:
        self.plan, self.trial, self.fold = plan, trial, fold

    def __call__(self, epoch: int, values: dict[str, Any]) -> None:
        import optuna

        value = values.get(self.plan.options.metric)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return
        step = self.fold * self.plan.epochs + epoch - 1
        self.trial.report(float(value), step)
        # Stopping after the very last epoch saves nothing: that trial completes instead.
        if step < self.plan.steps - 1 and self.trial.should_prune():
            raise optuna.TrialPruned(
                f"pruned at fold {self.fold} epoch {epoch}: {self.plan.options.metric} {value:.4f} below the median"
            )


def run_trial(plan: Plan, trial: Any, params: dict[str, Any], on_event: EventHandler | None) -> float:
    """Train every fold of one trial; the objective is the mean over folds of each fold's best validation value."""
    from dmlbench.training import RunMeta, TrainHooks, train

    values: list[float] = []
    for fold, train_classes in enumerate(plan.folds):
        run_dir = plan.trial_dir(trial.number, fold)
        trial.set_user_attr(RUN_DIR_ATTR, str(run_dir))
        run_id = f"{plan.study}-trial-{trial.number}" + (f"-fold-{fold}" if len(plan.folds) > 1 else "")
        summary = train(
            plan.config(params, run_id=run_id),
            run_dir,
            places=plan.options.places,
            force=True,  # a folder left by an earlier, dead use of this number is ours to clear
            device=plan.options.device,
            on_event=on_event,
            evaluate_at_end=False,
            train_classes=train_classes,
            meta=RunMeta("trial", study=plan.study, trial=trial.number, fold=fold if len(plan.folds) > 1 else None),
            hooks=TrainHooks(on_validation=_PruningHook(plan, trial, fold)),
        )
        if summary.best_val is None:
            raise ConfigError(
                f"trial {trial.number} fold {fold} has no validation value", hint="check validation.metric"
            )
        values.append(float(summary.best_val["value"]))
    return sum(values) / len(values)


def work(plan: Plan, study: Any, *, on_event: EventHandler | None = None) -> int:
    """Run trials until the study has `plan.trials` finished or live ones (or the timeout); trials run here."""
    import optuna
    from optuna.trial import TrialState

    from dmlbench.losses import LossInputError
    from dmlbench.training import TrainingDivergedError

    deadline = time.monotonic() + plan.options.timeout if plan.options.timeout else None
    ran = 0
    task = f"tune {plan.study}"
    emit(on_event, Event("start", task, total=float(plan.trials), unit="trial"))
    emit(on_event, Event("advance", task, amount=float(min(counts(study).finished, plan.trials))))
    while deadline is None or time.monotonic() < deadline:
        with ask_lock(plan.study_dir):
            reap_stale(study, plan)
            now = counts(study)
            if now.finished + now.running >= plan.trials:
                break
            study.sampler = _sampler(plan, len(study.get_trials(deepcopy=False)))
            trial = study.ask()
            trial.set_user_attr(OWNER_ATTR, owner_record())
            params = plan.space.suggest(trial)
        ran += 1
        shown = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
        try:
            value = run_trial(plan, trial, params, on_event)
        except optuna.TrialPruned as pruned:
            study.tell(trial, state=TrialState.PRUNED)
            message = f"trial {trial.number} pruned ({pruned})"
        except (TrainingDivergedError, LossInputError) as err:
            # A setting that makes training diverge is a hopeless trial, stopped early: pruned, counted.
            trial.set_user_attr("dmlbench_diverged", err.message)
            study.tell(trial, state=TrialState.PRUNED)
            message = f"trial {trial.number} diverged, pruned: {err.message}"
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        else:
            study.tell(trial, value)
            message = f"trial {trial.number}: {plan.options.metric} {value:.4f}"
        emit(on_event, Event("log", "tune", message=f"{message}  [{shown}]"))
        emit(on_event, Event("advance", task, amount=1.0))
    emit(on_event, Event("finish", task))
    return ran


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
