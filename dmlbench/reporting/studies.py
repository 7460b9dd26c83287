"""Tuning studies in the report: per Optuna study a summary, its optimisation history and parameter
importances (Optuna's matplotlib visualisations), read from the study storage, never written to it.

Optuna is imported only here and only when studies are asked for (or an HTML report finds a storage).
"""

from __future__ import annotations

import io
import logging
import math
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dmlbench.errors import DmlbenchError, EnvironmentFailure, first_line, require_file
from dmlbench.paths import check_name
from dmlbench.reporting.model import RenderedFigure, StudySummary
from dmlbench.runsroot import STUDIES_JOURNAL
from dmlbench.utils.io import write_bytes_atomic
from dmlbench.utils.redact import redact

log = logging.getLogger(__name__)

# The default study storage of `dmlbench tune` (one journal file per runs root).
JOURNAL = STUDIES_JOURNAL
STORAGE_HINT = "pass the runs root that `dmlbench tune` used, or --storage URL (a journal file, sqlite:///...)"


def find_storages(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The default journal storage of every runs root among `paths` that has one."""
    found: dict[Path, Path] = {}
    for raw in paths:
        path = Path(raw)
        candidate = path / JOURNAL
        if path.is_dir() and candidate.is_file():
            found.setdefault(candidate.resolve(), candidate)
    return list(found.values())


def open_storage(storage: str | os.PathLike[str]) -> Any:
    """An Optuna storage, read-only in practice: a journal file path, or a URL Optuna understands.

    A path or sqlite file that does not exist is an error here, because Optuna would create it.
    """
    import optuna
    from optuna.storages.journal import JournalFileBackend

    from dmlbench.tuning.storage import check_journal, check_storage_spec

    text = os.fspath(storage)
    check_storage_spec(text)
    if "://" not in text:
        path = Path(text)
        require_file(path, what="study storage", hint=STORAGE_HINT)
        check_journal(path, writing=False)
        try:
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        except (OSError, ValueError) as err:
            raise EnvironmentFailure(f"cannot read study storage {path}: {err}", hint=STORAGE_HINT) from None
    if text.startswith("sqlite:///"):
        target = Path(text.removeprefix("sqlite:///").split("?", 1)[0])  # `?...` are driver arguments
        require_file(target, what="study storage", hint=STORAGE_HINT)
    try:
        return optuna.storages.RDBStorage(text)
    except Exception as err:  # noqa: BLE001 - SQLAlchemy and drivers raise many kinds; each means "cannot open"
        reason = redact(first_line(err), known=[text])
        raise EnvironmentFailure(f"cannot open study storage {redact(text)}: {reason}", hint=STORAGE_HINT) from None


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def summarise(study: Any) -> StudySummary:
    """Counts by state and the best trial of a single-objective study."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    count = {state: sum(1 for t in trials if t.state == state) for state in TrialState}
    best_value: float | None = None
    best_params: dict[str, Any] = {}
    direction = "multi-objective"
    if len(study.directions) == 1:
        direction = study.direction.name.lower()
        if count[TrialState.COMPLETE]:
            best = study.best_trial
            best_value = float(best.value) if best.value is not None and math.isfinite(best.value) else None
            best_params = dict(best.params)
    metric = study.user_attrs.get("metric")
    return StudySummary(
        name=str(study.study_name),
        direction=direction,
        metric=str(metric) if metric is not None else None,
        complete=count[TrialState.COMPLETE],
        pruned=count[TrialState.PRUNED],
        failed=count[TrialState.FAIL],
        running=count[TrialState.RUNNING] + count[TrialState.WAITING],
        best_value=best_value,
        best_params=best_params,
    )


def _png(axes: Any) -> bytes:
    figure = axes.figure
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None}, bbox_inches="tight")
    finally:
        import matplotlib.pyplot as plt  # Optuna draws through pyplot; close its figure or it leaks

        plt.close(figure)
    return buffer.getvalue()


def study_figures(study: Any, summary: StudySummary, plots_dir: Path) -> tuple[list[RenderedFigure], str | None]:
    """Optimisation history and parameter importances as PNG under `plots_dir`; why one is missing."""
    import optuna
    from optuna.visualization import matplotlib as optuna_plots

    try:
        stem = "study-" + check_name(summary.name, "study name")
    except DmlbenchError:
        return [], f"study name {summary.name!r} is not a plain name: no plot files"
    if summary.direction == "multi-objective":
        return [], "multi-objective study: no plots"
    if not summary.complete:
        return [], "no complete trial yet: no plots"
    figures: list[RenderedFigure] = []
    missing: list[str] = []
    import matplotlib

    # Optuna's plots switch pyplot's global style (ggplot); keep that from leaking into later plots.
    with _quiet_optuna(), matplotlib.rc_context():
        drawn: list[tuple[str, str, Callable[[], Any]]] = [
            ("history", "optimisation history", lambda: optuna_plots.plot_optimization_history(study))
        ]
        if summary.complete >= 2 and summary.best_params:
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)  # fixed seed: same bytes each time
            drawn.append(
                ("importances", "parameter importances", lambda: optuna_plots.plot_param_importances(study, evaluator))
            )
        else:
            missing.append("parameter importances need 2 complete trials with parameters")
        for suffix, title, draw in drawn:
            try:
                png = _png(draw())
            except (ValueError, RuntimeError) as err:
                missing.append(f"{title}: {err}")
                continue
            path = plots_dir / f"{stem}-{suffix}.png"
            write_bytes_atomic(path, png)
            figures.append(RenderedFigure("", path.stem, f"study {summary.name}: {title}", png, study=summary.name))
    return figures, "; ".join(missing) or None


def load_studies(
    storages: Sequence[str | os.PathLike[str]], plots_dir: Path | None
) -> tuple[list[StudySummary], list[RenderedFigure]]:
    """Every study of every storage, summarised (and plotted into `plots_dir` when given)."""
    import optuna

    summaries: list[StudySummary] = []
    figures: list[RenderedFigure] = []
    if plots_dir is not None:
        plots_dir.mkdir(parents=True, exist_ok=True)
    for storage_spec in storages:
        storage = open_storage(storage_spec)
        names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False))
        for name in names:
            study = optuna.load_study(study_name=name, storage=storage)
            summary = summarise(study)
            if plots_dir is not None:
                drawn, note = study_figures(study, summary, plots_dir)
                figures.extend(drawn)
                if note:
                    summary = StudySummary(**{**summary.__dict__, "note": note})
            summaries.append(summary)
    return summaries, figures
