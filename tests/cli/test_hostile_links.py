"""Links planted in a run or dataset folder (copied from someone else) are refused, never written through.

For every name a run folder owns (`dmlbench.rundir.OWNED_PATHS`) and every name `prepare` owns in a
dataset folder (`dmlbench.datasets.prepared.DATASET_PATHS` and the downloads), each writer of that folder
is run with a link planted at that name, pointing at a file or folder of the user's. Whatever the writer:
exit 2, one `error:` line naming the link, the link's target byte-for-byte untouched, and nothing else in
the sandbox changed (`--force` removes nothing before refusing).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dmlbench.cli import app
from dmlbench.datasets.prepared import DATASET_PATHS, INFO_FILE, download_names
from dmlbench.evaluation.baselines import baseline_config
from dmlbench.rundir import OWNED_PATHS

runner = CliRunner()

TRAIN = ["train", "--dataset", "digits", "--quiet", "--data-root", "{data}", "--steps", "1"]
RUN_WRITERS = {
    "train": [*TRAIN, "--run-dir", "{runs}/R"],
    "train --resume": [*TRAIN, "--run-dir", "{runs}/R", "--resume"],
    "train --force": [*TRAIN, "--run-dir", "{runs}/R", "--force"],
    "evaluate": ["evaluate", "{runs}/R", "--data-root", "{data}"],
    "evaluate --save-embeddings": ["evaluate", "{runs}/R", "--data-root", "{data}", "--save-embeddings"],
    "evaluate --baseline": ["evaluate", "--baseline", "raw", "--dataset", "digits"]
    + ["--runs-root", "{runs}", "--data-root", "{data}"],
    "evaluate --baseline --force": ["evaluate", "--baseline", "raw", "--dataset", "digits"]
    + ["--runs-root", "{runs}", "--data-root", "{data}", "--force"],
}
DATASET_WRITERS = {
    # (argv, dataset folder, whether the dataset is prepared when the writer starts)
    "prepare --force": (["prepare", "digits", "--data-root", "{data}", "--force"], "digits", True),
    "prepare": (["prepare", "digits", "--data-root", "{data}"], "digits", False),
    "train (prepares)": ([*TRAIN, "--run-dir", "{out}/N", "--no-eval"], "digits", False),
    "prepare (downloads)": (["prepare", "fashion-mnist", "--data-root", "{data}"], "fashion-mnist", False),
}


@dataclass(frozen=True)
class Plant:
    writer: str
    folder: str  # relative to the sandbox: the run or dataset folder the link is planted in
    name: str  # the owned name, relative to that folder
    argv: tuple[str, ...]
    prepared: bool = True  # dataset cases: whether prepared.json stays


def _run_cases() -> list[Plant]:
    cases = []
    for writer, argv in RUN_WRITERS.items():
        folder = "runs/baselines/BASELINE" if "--baseline" in writer else "runs/R"
        # tensorboard's event files have names of their own: one planted among them stands for all
        names = [*OWNED_PATHS, "tensorboard/events.out.tfevents.1.host.1.0"]
        cases += [Plant(writer, folder, name, tuple(argv)) for name in names]
    return cases


def _dataset_cases() -> list[Plant]:
    from dmlbench.datasets.catalog import get_spec

    cases = []
    for writer, (argv, dataset, prepared) in DATASET_WRITERS.items():
        names = list(DATASET_PATHS)
        if dataset == "fashion-mnist":
            names += download_names(get_spec(dataset))
        if not prepared:  # a link at prepared.json means "prepared": nothing is written, only read
            names.remove(INFO_FILE)
        cases += [Plant(writer, f"data/{dataset}", name, tuple(argv), prepared) for name in names]
    return cases


CASES = _run_cases() + _dataset_cases()


def _tree(root: Path) -> dict[str, bytes | str | None]:
    """Every path below root: file bytes, a link's target (not followed), None for folders."""
    found: dict[str, bytes | str | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            key = os.path.relpath(path, root)
            if path.is_symlink():
                found[key] = str(path.readlink())
            elif path.is_dir():
                found[key] = None
            else:
                found[key] = path.read_bytes()
    return found


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/ (digits prepared), runs/R (trained, evaluated, embeddings saved), runs/baselines/<raw>."""
    base = tmp_path_factory.mktemp("links-template")
    folders = {"data": str(base / "data"), "runs": str(base / "runs")}
    for argv in (
        [*TRAIN, "--run-dir", "{runs}/R"],
        ["evaluate", "{runs}/R", "--data-root", "{data}", "--save-embeddings"],
        RUN_WRITERS["evaluate --baseline"],
    ):
        result = runner.invoke(app, [arg.format(**folders) for arg in argv])
        assert result.exit_code == 0, result.stderr
    (baseline,) = (base / "runs" / "baselines").iterdir()
    baseline.rename(baseline.parent / "BASELINE.tmp")  # the real name is restored per case
    (base / "runs" / "R" / ".lock").touch()  # every owned name below has a real counterpart where it can
    return base


def _plant(target: Path, decoy: Path) -> None:
    """Replace `target` by a link to `decoy`, a copy of what was there (so that every read still works)."""
    if target.is_dir():
        shutil.copytree(target, decoy)
        shutil.rmtree(target)
    elif target.exists():
        shutil.copyfile(target, decoy)
        target.unlink()
    elif target.suffix or target.name.startswith("."):
        decoy.write_bytes(b"the user's own file\n")
    else:
        decoy.mkdir()
        (decoy / "keep.txt").write_text("the user's own folder\n")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(decoy)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.writer}:{c.folder.split('/')[-1]}/{c.name}" for c in CASES])
def test_planted_link_is_refused(case: Plant, template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox = tmp_path / "sandbox"
    shutil.copytree(template, sandbox, symlinks=True)
    baseline = sandbox / "runs" / "baselines" / "BASELINE.tmp"
    real_baseline = baseline_config("raw", "digits", seed=0).run_id or ""
    baseline.rename(baseline.parent / real_baseline)
    folder = sandbox / case.folder.replace("BASELINE", real_baseline)
    folder.mkdir(parents=True, exist_ok=True)
    if not case.prepared:
        (folder / INFO_FILE).unlink(missing_ok=True)
    user = tmp_path / "user"
    user.mkdir()
    link = folder / case.name
    _plant(link, user / "decoy")
    folders = {"data": str(sandbox / "data"), "runs": str(sandbox / "runs"), "out": str(sandbox / "out")}
    argv = [arg.format(**folders) for arg in case.argv]
    monkeypatch.chdir(tmp_path)
    before_user, before_sandbox = _tree(user), _tree(sandbox)
    result = runner.invoke(app, argv)
    stderr = result.stderr
    assert result.exit_code == 2, f"exit {result.exit_code}: {stderr}{result.stdout}"
    assert "Traceback" not in stderr + result.stdout
    assert stderr.count("error:") == 1 and "hint:" in stderr, stderr
    assert str(link) in "".join(stderr.split()) and "link" in stderr, stderr
    assert _tree(user) == before_user, "the link's target was changed"
    assert _tree(sandbox) == before_sandbox, "the refused command changed the folder"
