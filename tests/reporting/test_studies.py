"""`report --studies`: a real (tiny) Optuna study, summarised and plotted, its storage never written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from report_runs import make_run
from typer.testing import CliRunner

from dmlbench.reporting import report

optuna = pytest.importorskip("optuna")


def make_study(root: Path, name: str = "digits-triplet", trials: int = 8) -> Path:
    """A seeded TPE study of a quadratic with its minimum at (x, y) = (2, -1), in the default journal."""
    journal = root / "studies.journal"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.create_study(
        study_name=name, storage=storage, direction="minimize", sampler=optuna.samplers.TPESampler(seed=0)
    )
    study.set_user_attr("metric", "map@r")

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -5.0, 5.0)
        y = trial.suggest_float("y", -5.0, 5.0)
        return (x - 2.0) ** 2 + (y + 1.0) ** 2

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=trials)
    return journal


@pytest.fixture
def root(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    make_run(runs, "digits-clustering-seed0", {"recall@1": 0.8, "nmi": 0.6})
    return runs


def invoke(*args: str) -> tuple[int, str, str]:
    from dmlbench.cli import app

    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_studies_summary_and_plots(root: Path, tmp_path: Path) -> None:
    journal = make_study(root)
    before = journal.read_bytes()
    entries = sorted(p.name for p in root.iterdir())
    plots = tmp_path / "plots"
    data = json.loads(report([root], fmt="json", studies=True, plots_dir=plots))
    (study,) = data["studies"]
    loaded = optuna.load_study(
        study_name="digits-triplet",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal))),
    )
    assert study["complete"] == 8 and study["pruned"] == 0 and study["direction"] == "minimize"
    assert study["metric"] == "map@r"
    assert study["best_value"] == pytest.approx(loaded.best_value)
    assert study["best_params"] == pytest.approx(loaded.best_params)
    for suffix in ("history", "importances"):
        with Image.open(plots / f"study-digits-triplet-{suffix}.png") as image:
            assert image.width > 200 and image.height > 150
    assert journal.read_bytes() == before, "the report wrote to the study storage"
    assert sorted(p.name for p in root.iterdir()) == entries, "the report left files in the runs root"


def test_html_adds_studies_by_itself(root: Path) -> None:
    make_study(root)
    plain = report([root], fmt="html")
    assert '<section id="studies">' in plain
    assert plain.count("<img ") == 1 + 2  # the recall plot (no history, no embeddings) + two study plots
    assert "study digits-triplet: optimisation history" in plain
    assert "## Studies" not in report([root], fmt="markdown")  # other formats only with --studies


def test_cli_studies_markdown(root: Path, tmp_path: Path) -> None:
    make_study(root, trials=3)
    code, stdout, stderr = invoke("report", str(root), "--studies", "--plots", str(tmp_path / "p"))
    assert code == 0, stderr
    assert "## Studies" in stdout
    line = next(row for row in stdout.splitlines() if row.startswith("| digits-triplet"))
    assert [cell.strip() for cell in line.strip("|").split("|")][:7] == [
        "digits-triplet",
        "minimize",
        "map@r",
        "3",
        "0",
        "0",
        "0",
    ]


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (("--studies",), 3, "no study storage"),
        (("--storage", "{tmp}/missing.journal"), 3, "does not exist"),
        (("--storage", "sqlite:///{tmp}/missing.db"), 3, "does not exist"),
        (("--storage", "nosuchdb://host/x"), 4, "cannot open study storage"),
    ],
)
def test_cli_studies_bad_input(args: tuple[str, ...], exit_code: int, message: str, root: Path, tmp_path: Path) -> None:
    code, stdout, stderr = invoke("report", str(root), *(a.format(tmp=tmp_path) for a in args))
    assert code == exit_code, stderr
    assert stdout == "" and "error:" in stderr and "hint:" in stderr and message in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "missing.journal").exists() and not (tmp_path / "missing.db").exists()
