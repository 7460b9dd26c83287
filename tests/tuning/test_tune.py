"""`dmlbench tune` end to end on digits: layout, test-split isolation, resume after SIGKILL, pruning,
final seeds, the fold ensemble, workers, and one-line errors for bad inputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dmlbench.errors import ConfigError
from dmlbench.rundir import RunDir, find_runs

REPO = Path(__file__).parents[2]
runner = CliRunner()


def _study(runs: Path, name: str = "digits-triplet") -> Any:
    import optuna

    from dmlbench.tuning.storage import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(str(runs / "studies.journal")))


def _states(study: Any) -> dict[str, int]:
    names = [t.state.name for t in study.get_trials(deepcopy=False)]
    return {state: names.count(state) for state in set(names)}


def _tune_cli(args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "dmlbench", "tune", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_done_when_three_trials_then_sigkill_resume_to_five_then_two_final_seeds(
    digits_root: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    common = ["--loss", "triplet", "--dataset", "digits", "--epochs", "1", "--folds", "1", "--device", "cpu"]
    common += ["--runs-root", str(runs), "--data-root", str(digits_root), "--quiet"]
    first = _tune_cli([*common, "--trials", "3"])
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    study_dir = runs / "tune" / "digits-triplet"
    trials = sorted(find_runs(study_dir), key=lambda r: r.root.name)
    assert [r.root.name for r in trials] == ["trial-0", "trial-1", "trial-2"]
    for run in trials:
        manifest = run.read_manifest()
        assert (manifest.kind, manifest.study, manifest.status) == ("trial", "digits-triplet", "complete")
        assert manifest.trial == int(run.root.name.split("-")[1])
        assert run.read_metrics("test") is None and not (run.root / "eval").exists()
        assert run.read_history().validations, "every trial validates on held-out training classes"
        assert manifest.val_classes and min(manifest.val_classes) >= 0 and max(manifest.val_classes) <= 4

    # A later --trials 5, killed while trial 3 trains: that trial is never counted, and the re-run ends at 5.
    second = _tune_cli([*common, "--trials", "5"])
    victim = RunDir(study_dir / "trial-3")
    deadline = time.monotonic() + 300
    while not (victim.exists() and victim.read_history().steps) and time.monotonic() < deadline:
        assert second.poll() is None, second.communicate()[1]
        time.sleep(0.05)
    second.send_signal(signal.SIGKILL)
    second.wait()
    assert _states(_study(runs)) == {"COMPLETE": 3, "RUNNING": 1}
    third = _tune_cli([*common, "--trials", "5"])
    out, err = third.communicate(timeout=600)
    assert third.returncode == 0, err
    study = _study(runs)
    states = _states(study)
    assert states.get("COMPLETE", 0) + states.get("PRUNED", 0) == 5
    assert states["FAIL"] == 1 and "RUNNING" not in states
    assert victim.read_manifest().status == "failed"
    retried = [t for t in study.trials if t.user_attrs.get("dmlbench_retry_of") == 3]
    assert len(retried) == 1 and retried[0].params == study.trials[3].params

    final = _tune_cli([*common, "--trials", "5", "--final-seeds", "2", "--json"])
    out, err = final.communicate(timeout=600)
    assert final.returncode == 0, err
    result = json.loads(out)
    assert len(_study(runs).trials) == 6, "the budget was already spent: no new trial"
    assert [f["name"] for f in result["finals"]] == ["final-seed0", "final-seed1"]
    for seed in (0, 1):
        run = RunDir(study_dir / f"final-seed{seed}")
        manifest = run.read_manifest()
        assert (manifest.kind, manifest.status, manifest.study) == ("final", "complete", "digits-triplet")
        assert manifest.tuned_params == result["best_params"] and manifest.tuning_trials == 5
        assert manifest.val_classes == [], "final runs train on every training class"
        metrics = run.read_metrics("test")
        assert metrics is not None and 0.0 < metrics.metrics["recall@1"] <= 1.0
        assert run.read_config().seed == seed
    summary = json.loads((study_dir / "study.json").read_text())
    assert summary["n_complete"] + summary["n_pruned"] == 5 and summary["best_trial"] == result["best_trial"]


@pytest.mark.slow
def test_trials_never_read_test_rows(small: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every image a trial reads goes through build_dataset; make it refuse test rows, and tune."""
    import dmlbench.datasets.torch_data as torch_data
    from dmlbench.tuning import run_finals, tune

    real = torch_data.build_dataset
    seen: list[set[str]] = []

    def train_rows_only(prepared: Any, frame: Any, **kwargs: Any) -> Any:
        splits = set(frame["split"].astype(str))
        seen.append(splits)
        if splits != {"train"}:
            raise AssertionError(f"a trial read rows of {sorted(splits)}")
        return real(prepared, frame, **kwargs)

    monkeypatch.setattr(torch_data, "build_dataset", train_rows_only)
    result = tune(small(trials=2))
    assert result.n_complete == 2
    assert len(seen) >= 4, "each trial builds its training and its validation rows"
    # The guard is real: the final run (which must evaluate on test) trips it.
    with pytest.raises(AssertionError, match="test"):
        run_finals(small(trials=2, final_seeds=1))


@pytest.mark.slow
def test_median_pruning_stops_bad_trials_and_counts_them(small: Any, tmp_path: Path) -> None:
    space = tmp_path / "space.toml"
    # A wide learning-rate range makes some trials hopeless after their first epoch.
    space.write_text("[optim.small]\nlr = { low = 1e-6, high = 3e-2, log = true }\n[loss.triplet]\n", encoding="utf-8")
    from dmlbench.tuning import tune

    result = tune(small(trials=5, epochs=2, startup_trials=1, space_file=space))
    assert result.n_pruned >= 1
    assert result.n_complete + result.n_pruned == 5 and result.n_failed == 0
    study = _study(Path(result.study_dir).parents[1])
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    for trial in pruned:
        run = RunDir(Path(result.study_dir) / f"trial-{trial.number}")
        manifest = run.read_manifest()
        assert manifest.status == "failed" and (manifest.error or "").startswith("TrialPruned")
        assert len(run.read_history().validations) < 2, "a pruned trial stops before its last epoch"
        assert list(trial.intermediate_values) == [0]


@pytest.mark.slow
def test_folds_train_each_fold_and_the_ensemble_concatenates_them(small: Any) -> None:
    from dmlbench.tuning import tune

    result = tune(small(trials=1, folds=2, final_seeds=1))
    study_dir = Path(result.study_dir)
    folds = [RunDir(study_dir / "trial-0" / f"fold-{k}") for k in (0, 1)]
    val = [set(f.read_manifest().val_classes) for f in folds]
    assert val[0] and val[1] and not val[0] & val[1], "the folds validate on disjoint classes"
    assert val[0] | val[1] == {0, 1, 2, 3, 4}
    assert [f.read_manifest().fold for f in folds] == [0, 1]
    assert result.ensemble is not None
    ensemble = RunDir(result.ensemble.run_dir)
    manifest = ensemble.read_manifest()
    assert (manifest.kind, manifest.status, manifest.trial) == ("ensemble", "complete", 0)
    metrics = ensemble.read_metrics("test")
    assert metrics is not None and metrics.embedding_dim == 2 * folds[0].read_config().model.embedding_dim
    assert 0.0 < metrics.metrics["recall@1"] <= 1.0
    again = tune(small(trials=1, folds=2, final_seeds=1))
    assert again.ensemble is not None and again.ensemble.reused and again.finals[0].reused


@pytest.mark.slow
def test_two_workers_end_with_exactly_n_trials(small: Any) -> None:
    pytest.importorskip("dmlbench.launch.local")
    from dmlbench.tuning import tune

    result = tune(small(trials=4, workers=2))
    assert result.n_complete + result.n_pruned == 4 and result.n_failed == 0 and result.n_running == 0
    study = _study(Path(result.study_dir).parents[1])
    assert len(study.trials) == 4
    owners = {t.user_attrs["dmlbench_owner"]["pid"] for t in study.trials}
    assert len(owners) == 2, "both workers ran trials"


@pytest.mark.slow
def test_tune_many_gives_every_loss_the_same_budget(small: Any, digits_root: Path, tmp_path: Path) -> None:
    from dmlbench.paths import Places
    from dmlbench.tuning import tune_many

    results = tune_many(
        ["triplet", "lifted"], "digits", 1, folds=1, epochs=1, places=Places.of(digits_root, tmp_path / "many"),
        device="cpu",
    )  # fmt: skip
    assert {loss: r.n_complete + r.n_pruned for loss, r in results.items()} == {"triplet": 1, "lifted": 1}
    assert {r.study for r in results.values()} == {"digits-triplet", "digits-lifted"}


def test_continuing_a_study_with_other_settings_is_refused(small: Any) -> None:
    from dmlbench.tuning.plan import make_plan
    from dmlbench.tuning.worker import open_study

    open_study(make_plan(small(trials=2)), create=True)
    open_study(make_plan(small(trials=7)), create=True)  # a bigger budget continues the same study
    with pytest.raises(ConfigError, match="other settings .*base_config"):
        open_study(make_plan(small(trials=2, epochs=2)), create=True)


@pytest.mark.parametrize(
    ("extra", "code", "message", "hint"),
    [
        (["--loss", "tripelt"], 2, "unknown loss 'tripelt'", "did you mean 'triplet'?"),
        (["--folds", "3"], 2, "3 folds of 5 training classes", "this dataset allows at most --folds 2"),
        (["--space", "{empty}"], 2, "defines no tables", "docs/tuning.md"),
        (["--space", "{invalid}"], 2, "low 2.0 must be below high 1.0", "low, high"),
        (["--storage", "sqlite:////nonexistent-folder/s.db"], 4, "does not exist", "create it"),
        (["--storage", "postgresql://me:pw@127.0.0.1:1/db"], 4, "cannot open --storage", "driver"),
        (["--trials", "0"], 2, "--trials: Input should be greater than 0", "--trials"),
        (["--study", "../up"], 2, "study name '../up' is not a plain name", "choose a study name"),
        (["--workers", "0"], 2, "--workers must be at least 1", "--workers"),
        (["--workers", "2", "--gpus", "7"], 4, "--gpus names GPU 7", "nvidia-smi"),
    ],
)
def test_bad_inputs_are_one_line_errors_and_write_nothing(
    extra: list[str], code: int, message: str, hint: str, digits_root: Path, tmp_path: Path
) -> None:
    from dmlbench.cli import app

    (tmp_path / "empty.toml").write_text("", encoding="utf-8")
    (tmp_path / "invalid.toml").write_text("[loss.triplet]\nmargin = { low = 2, high = 1 }\n", encoding="utf-8")
    extra = [a.format(empty=tmp_path / "empty.toml", invalid=tmp_path / "invalid.toml") for a in extra]
    args = ["tune", "--loss", "triplet", "--dataset", "digits", "--trials", "2", "--folds", "1", "--epochs", "1"]
    args += ["--runs-root", str(tmp_path / "runs"), "--data-root", str(digits_root), *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 2 and lines[0].startswith("error:") and lines[1].startswith("hint:"), result.stderr
    assert message in lines[0] and hint in lines[1]
    assert "pw" not in result.stderr
    assert not (tmp_path / "runs").exists(), "a rejected study writes nothing"
