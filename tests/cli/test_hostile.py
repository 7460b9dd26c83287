"""Hostile and careless command lines, table-driven, across the subcommands.

For every case: the exit code, one `error:` line with a `hint:`, no traceback, nothing written outside
the folders the command was given, nothing of the user's removed, and no half-written run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dmlbench.cli import app

runner = CliRunner()


@dataclass(frozen=True)
class Case:
    name: str
    argv: list[str]  # {data}, {runs}, {user}, {out} are replaced by the sandbox's folders
    code: int
    message: str
    setup: Callable[[Path], None] | None = None
    may_write: tuple[str, ...] = field(default=("out",))  # sandbox folders the command may write into


def _user_file(sandbox: Path) -> None:
    (sandbox / "user" / "notes.txt").write_text("mine")


def _run_dir_with_user_files(sandbox: Path) -> None:
    target = sandbox / "out" / "V" / "train" / "mydata"
    target.mkdir(parents=True)
    (target / "a.txt").write_text("thesis")


def _run_dir_is_a_file(sandbox: Path) -> None:
    (sandbox / "out").mkdir(exist_ok=True)
    (sandbox / "out" / "R").write_text("a file")


def _binary_config(sandbox: Path) -> None:
    (sandbox / "user" / "cfg.toml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")


def _bad_toml(sandbox: Path) -> None:
    (sandbox / "user" / "cfg.toml").write_text("[optim\nlr = ")


def _config_setting_run_id(sandbox: Path) -> None:
    (sandbox / "user" / "cfg.toml").write_text('run_id = "../../shared_escape"\n')


def _hostile_catalog(sandbox: Path) -> None:
    (sandbox / "user" / "cat.toml").write_text(
        '["../evil"]\ntitle = "x"\nsource = "digits"\nprotocol = "class-split"\nbackbone = "small_cnn"\n'
        "image_size = 8\nchannels = 1\nrecall_k = [1]\ntrain_classes = [0, 4]\ntest_classes = [5, 9]\n"
        "default_batch_classes = 5\ndefault_batch_per_class = 8\n"
    )


def _from_folder_with_outside_link(sandbox: Path) -> None:
    folder = sandbox / "user" / "fm"
    folder.mkdir()
    (sandbox / "user" / "secret").write_text("outside")
    (folder / "train-images-idx3-ubyte.gz").symlink_to(sandbox / "user" / "secret")


def _not_a_run(sandbox: Path) -> None:
    (sandbox / "user" / "somefolder").mkdir()
    (sandbox / "user" / "somefolder" / "x.txt").write_text("x")


def _damaged_manifest(sandbox: Path) -> None:
    run = sandbox / "user" / "run"
    run.mkdir()
    (run / "manifest.json").write_text("{not json")


def _forged_images(sandbox: Path) -> None:
    """images.npy whose header declares 10**9 digits: refused from the header, never allocated."""
    import io

    import numpy as np

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (10**9, 8, 8)})
    (sandbox / "data" / "digits" / "images.npy").write_bytes(header.getvalue() + bytes(100))


TRAIN = ["train", "--dataset", "digits", "--quiet", "--no-eval", "--data-root", "{data}", "--steps", "1"]


def _fifo(sandbox: Path) -> None:
    os.mkfifo(sandbox / "user" / "pipe.toml")
    os.mkfifo(sandbox / "user" / "pipe.pth")


def _empty_weights(sandbox: Path) -> None:
    (sandbox / "user" / "w.pth").write_bytes(b"")
    (sandbox / "user" / "w.safetensors").write_bytes(b"")


def _catalog_with(**fields: str) -> Callable[[Path], None]:
    """A user catalog with one synthetic dataset; `fields` replace lines of its table."""

    def write(sandbox: Path) -> None:
        table = {
            "title": '"mine"',
            "source": '"synthetic"',
            "protocol": '"class-split"',
            "backbone": '"small_cnn"',
            "image_size": "32",
            "channels": "3",
            "recall_k": "[1]",
            "train_classes": "[0, 9]",
            "test_classes": "[10, 19]",
            "default_batch_classes": "4",
            "default_batch_per_class": "4",
            "params": "{ num_classes = 20, images_per_class = 5, size = 16, seed = 0 }",
            **fields,
        }
        text = "[mine]\n" + "".join(f"{key} = {value}\n" for key, value in table.items())
        (sandbox / "user" / "cat.toml").write_text(text)

    return write


CATALOG = ["--catalog", "{user}/cat.toml"]

CASES = [
    # train
    Case("unknown loss", [*TRAIN, "--runs-root", "{out}", "--loss", "clusterin"], 2, "unknown loss"),
    Case("unknown dataset", [*TRAIN, "--runs-root", "{out}", "--dataset", "cub-200"], 2, "cub-200"),
    Case("unprepared dataset", [*TRAIN, "--runs-root", "{out}", "--dataset", "cub200"], 3, "not prepared"),
    Case("unknown config key", [*TRAIN, "--runs-root", "{out}", "--set", "optim.lrr=1"], 2, "unknown config key"),
    Case("lr inf", [*TRAIN, "--run-dir", "{out}/R", "--set", "optim.lr=inf"], 2, "finite"),
    Case("lr nan", [*TRAIN, "--run-dir", "{out}/R", "--set", "optim.lr=nan"], 2, "finite"),
    Case("lr negative", [*TRAIN, "--run-dir", "{out}/R", "--set", "optim.lr=-1"], 2, "optim.lr"),
    Case("epochs zero by flag", [*TRAIN, "--run-dir", "{out}/R", "--epochs", "0"], 2, "--epochs"),
    Case("huge batch", [*TRAIN, "--run-dir", "{out}/R", "--set", "sampler.classes_per_batch=99"], 2, "99 classes"),
    Case(
        "unknown feature_norm",
        [*TRAIN, "--run-dir", "{out}/R", "--set", 'model.feature_norm="layer"'],
        2,
        "should be 'none' or 'batch'",
    ),
    Case(
        "one-image batch, standardised head",
        [*TRAIN, "--run-dir", "{out}/R", "--loss", "proxyanchor", "--set", "sampler.classes_per_batch=1"]
        + ["--set", "sampler.samples_per_class=1"],
        2,
        "a batch holds 1 image",
    ),
    Case("val classes 0.99", [*TRAIN, "--run-dir", "{out}/R", "--val-classes", "0.99"], 2, "val"),
    Case("set not key=value", [*TRAIN, "--run-dir", "{out}/R", "--set", "optim.lr"], 2, "not key=value"),
    Case("set bad literal", [*TRAIN, "--run-dir", "{out}/R", "--set", "optim.lr=[1,"], 2, "not a TOML value"),
    Case("run_id escapes", [*TRAIN, "--runs-root", "{out}", "--set", 'run_id="../../esc"'], 2, "not a plain name"),
    Case("run_id absolute", [*TRAIN, "--runs-root", "{out}", "--set", 'run_id="/tmp/dmlb_abs"'], 2, "plain name"),
    Case(
        "run_id from config file",
        [*TRAIN, "--runs-root", "{out}", "--config", "{user}/cfg.toml"],
        2,
        "plain name",
        _config_setting_run_id,
    ),
    Case("config missing", [*TRAIN, "--runs-root", "{out}", "--config", "{user}/nope.toml"], 3, "does not exist"),
    Case("config is a folder", [*TRAIN, "--runs-root", "{out}", "--config", "{user}"], 2, "is a folder"),
    Case(
        "config binary",
        [*TRAIN, "--runs-root", "{out}", "--config", "{user}/cfg.toml"],
        2,
        "not a text file",
        _binary_config,
    ),
    Case(
        "config bad toml",
        [*TRAIN, "--runs-root", "{out}", "--config", "{user}/cfg.toml"],
        2,
        "not valid TOML",
        _bad_toml,
    ),
    Case(
        "force on user files", [*TRAIN, "--run-dir", "{out}/V", "--force"], 2, "did not write", _run_dir_with_user_files
    ),
    Case("run dir not a run", [*TRAIN, "--run-dir", "{user}/somefolder"], 2, "not a dmlbench run", _not_a_run),
    Case("run dir is a file", [*TRAIN, "--run-dir", "{out}/R"], 2, "file", _run_dir_is_a_file),
    Case("resume nothing", [*TRAIN, "--run-dir", "{out}/R", "--resume"], 3, "nothing to resume"),
    Case("resume damaged run", [*TRAIN, "--run-dir", "{user}/run", "--resume"], 3, "manifest", _damaged_manifest),
    Case("cuda without cuda", [*TRAIN, "--run-dir", "{out}/R", "--device", "cuda"], 4, "CUDA"),
    Case("bad device", [*TRAIN, "--run-dir", "{out}/R", "--device", "tpu"], 2, "tpu"),
    Case("weights file missing", [*TRAIN, "--run-dir", "{out}/R", "--weights", "{user}/w.pth"], 2, "weights"),
    Case(
        "weights file missing, backbone with weights",
        [*TRAIN, "--run-dir", "{out}/R", "--weights", "{user}/w.pth", "--backbone", "resnet18"],
        3,
        "does not exist",
    ),
    Case("unknown backbone", [*TRAIN, "--run-dir", "{out}/R", "--backbone", "resnet5"], 2, "resnet50"),
    Case(
        "prepared images forged",
        [*TRAIN, "--run-dir", "{out}/R"],
        3,
        "declares a 1000000000x8x8 uint8 array",
        _forged_images,
    ),
    Case("nproc zero", [*TRAIN, "--run-dir", "{out}/R", "--nproc-per-node", "0"], 2, "nproc"),
    # prepare
    Case("prepare unknown", ["prepare", "cub-200", "--data-root", "{out}"], 2, "cub-200"),
    Case(
        "prepare generated with --from",
        ["prepare", "digits", "--data-root", "{out}", "--from", "{user}"],
        2,
        "--from is not used",
    ),
    Case(
        "prepare --from missing",
        ["prepare", "fashion-mnist", "--data-root", "{out}", "--from", "{user}/none"],
        3,
        "does not exist",
    ),
    Case(
        "prepare --from link outside",
        ["prepare", "fashion-mnist", "--data-root", "{out}", "--from", "{user}/fm"],
        4,
        "outside",
        _from_folder_with_outside_link,
    ),
    Case(
        "prepare catalog missing",
        ["prepare", "--list", "--catalog", "{user}/none.toml", "--data-root", "{out}"],
        3,
        "does not exist",
    ),
    Case(
        "catalog name is a path",
        ["prepare", "--list", "--catalog", "{user}/cat.toml", "--data-root", "{out}"],
        2,
        "plain name",
        _hostile_catalog,
    ),
    Case("data root is a file", ["prepare", "digits", "--data-root", "{user}/notes.txt"], 2, "file", _user_file),
    # evaluate
    Case("evaluate missing run", ["evaluate", "{user}/norun", "--data-root", "{data}"], 3, "does not exist"),
    Case("evaluate not a run", ["evaluate", "{user}/somefolder", "--data-root", "{data}"], 3, "not a run", _not_a_run),
    Case("evaluate damaged run", ["evaluate", "{user}/run", "--data-root", "{data}"], 3, "manifest", _damaged_manifest),
    Case(
        "evaluate embeddings missing",
        ["evaluate", "--embeddings", "{user}/e.npy", "--labels", "{user}/l.npy"],
        3,
        "e.npy",
    ),
    # report
    Case("report nothing there", ["report", "{user}/none"], 3, "none"),
    Case("report no runs", ["report", "{user}/somefolder"], 3, "no runs", _not_a_run),
    Case("report unknown format", ["report", "{user}", "--format", "docx"], 2, "docx"),
    # bench
    Case(
        "bench unknown loss",
        ["bench", "--losses", "clusterin", "--runs-root", "{out}", "--data-root", "{data}"],
        2,
        "clusterin",
    ),
    Case(
        "bench bad eval metric before training",
        ["bench", "--datasets", "digits", "--eval-metrics", "nmj", "--runs-root", "{out}", "--data-root", "{data}"],
        2,
        "nmj",
    ),
    Case(
        "bench workers zero",
        ["bench", "--datasets", "digits", "--workers", "0", "--runs-root", "{out}", "--data-root", "{data}"],
        2,
        "--workers",
    ),
    Case(
        "tune unknown loss",
        [
            "tune",
            "--loss",
            "clusterin",
            "--dataset",
            "digits",
            "--trials",
            "1",
            "--runs-root",
            "{out}",
            "--data-root",
            "{data}",
        ],
        2,
        "clusterin",
    ),
    Case(
        "tune study name is a path",
        [
            "tune",
            "--loss",
            "triplet",
            "--dataset",
            "digits",
            "--trials",
            "1",
            "--study",
            "../x",
            "--runs-root",
            "{out}",
            "--data-root",
            "{data}",
        ],
        2,
        "plain name",
    ),
    Case(
        "bench unknown dataset",
        ["bench", "--datasets", "cub-200", "--runs-root", "{out}", "--data-root", "{data}"],
        2,
        "cub-200",
    ),
    # issue 24: numbers bounded where they are parsed (faiss's k-means seed is a C int)
    Case("seed beyond a C int", [*TRAIN, "--run-dir", "{out}/R", "--seed", "9999999999"], 2, "2147483647"),
    Case("seed beyond int64", [*TRAIN, "--run-dir", "{out}/R", "--seed", "99999999999999999999"], 2, "seed"),
    Case("seed from --set", [*TRAIN, "--run-dir", "{out}/R", "--set", "seed=4294967296"], 2, "seed"),
    Case("embedding dim huge", [*TRAIN, "--run-dir", "{out}/R", "--embedding-dim", "100000000000"], 2, "embedding"),
    Case("epochs huge", [*TRAIN, "--run-dir", "{out}/R", "--epochs", "99999999999999999999"], 2, "--epochs"),
    Case("steps huge", [*TRAIN, "--run-dir", "{out}/R", "--steps", "99999999999999"], 2, "--steps"),
    Case("loader workers huge", [*TRAIN, "--run-dir", "{out}/R", "--set", "schedule.num_workers=100000"], 2, "num_wor"),
    Case("image size huge", [*TRAIN, "--run-dir", "{out}/R", "--set", "model.image_size=1000000"], 2, "image_size"),
    Case("batch huge", [*TRAIN, "--run-dir", "{out}/R", "--set", "sampler.samples_per_class=10000000"], 2, "sampler"),
    Case(
        "bench seeds huge",
        ["bench", "--datasets", "digits", "--seeds", "10000000000", "--runs-root", "{out}", "--data-root", "{data}"],
        2,
        "--seeds",
    ),
    Case(
        "bench workers huge",
        ["bench", "--datasets", "digits", "--workers", "100000", "--runs-root", "{out}", "--data-root", "{data}"],
        2,
        "--workers",
    ),
    Case(
        "bench final seeds huge",
        ["bench", "--datasets", "digits", "--tune-trials", "1", "--final-seeds", "100000"]
        + ["--runs-root", "{out}", "--data-root", "{data}"],
        2,
        "--final-seeds",
    ),
    Case(
        "baseline seed huge",
        ["evaluate", "--baseline", "untrained", "--dataset", "digits", "--seed", "99999999999"]
        + ["--runs-root", "{out}", "--data-root", "{data}"],
        2,
        "--seed",
    ),
    # issue 24: an empty list is an error, not the default; a bogus launcher has a hint
    Case("bench losses empty", ["bench", "--losses", "", "--runs-root", "{out}", "--data-root", "{data}"], 2, "empty"),
    Case(
        "bench losses commas",
        ["bench", "--losses", ",", "--runs-root", "{out}", "--data-root", "{data}"],
        2,
        "--losses",
    ),
    Case(
        "bench datasets empty", ["bench", "--datasets", "", "--runs-root", "{out}", "--data-root", "{data}"], 2, "empty"
    ),
    Case("report metrics empty", ["report", "{user}", "--metrics", ""], 2, "--metrics is empty"),
    Case(
        "bench launcher bogus",
        ["bench", "--launcher", "bogus", "--runs-root", "{out}", "--data-root", "{data}"],
        2,
        "launchers: local, slurm",
    ),
    # issue 24: a FIFO or a folder given as a file says what it is (and is never opened: a FIFO blocks)
    Case("config is a FIFO", [*TRAIN, "--runs-root", "{out}", "--config", "{user}/pipe.toml"], 2, "FIFO", _fifo),
    Case(
        "weights is a FIFO",
        [*TRAIN, "--run-dir", "{out}/R", "--weights", "{user}/pipe.pth", "--backbone", "resnet18"],
        2,
        "FIFO",
        _fifo,
    ),
    Case(
        "weights is a folder",
        [*TRAIN, "--run-dir", "{out}/R", "--weights", "{user}", "--backbone", "resnet18"],
        2,
        "is a folder",
    ),
    Case("catalog is a FIFO", ["prepare", "--list", *CATALOG[:1], "{user}/pipe.toml"], 2, "FIFO", _fifo),
    # issue 24: an exception with an empty message is still one line
    Case(
        "weights empty .pth",
        [*TRAIN, "--run-dir", "{out}/R", "--weights", "{user}/w.pth", "--backbone", "resnet18"],
        2,
        "w.pth",
        _empty_weights,
    ),
    Case(
        "weights empty .safetensors",
        [*TRAIN, "--run-dir", "{out}/R", "--weights", "{user}/w.safetensors", "--backbone", "resnet18"],
        2,
        "w.safetensors",
        _empty_weights,
    ),
    # issue 24: a source validates its params where the catalog loads
    Case(
        "catalog size 0",
        ["prepare", "--list", *CATALOG],
        2,
        "params.size",
        _catalog_with(params="{ num_classes = 20, images_per_class = 5, size = 0, seed = 0 }"),
    ),
    Case(
        "catalog negative count",
        ["prepare", "--list", *CATALOG],
        2,
        "params.num_classes",
        _catalog_with(params="{ num_classes = -3, images_per_class = 5, size = 16, seed = 0 }"),
    ),
    Case(
        "catalog huge count",
        ["prepare", "--list", *CATALOG],
        2,
        "params.images_per_class",
        _catalog_with(params="{ num_classes = 20, images_per_class = 100000000000, size = 16, seed = 0 }"),
    ),
    Case(
        "catalog param typo",
        ["prepare", "--list", *CATALOG],
        2,
        "params.sizes",
        _catalog_with(params="{ num_classes = 20, images_per_class = 5, sizes = 16, seed = 0 }"),
    ),
    Case(
        "catalog params on a downloaded source",
        ["prepare", "--list", *CATALOG],
        2,
        "takes no params",
        _catalog_with(source='"cub200"'),
    ),
    Case(
        "catalog negative expect_images",
        ["prepare", "mine", *CATALOG, "--data-root", "{out}"],
        2,
        "expect_images",
        _catalog_with(expect_images="{ train = -1 }"),
    ),
    Case(
        "train on a catalog size 0",
        [*TRAIN, "--run-dir", "{out}/R", "--dataset", "mine", *CATALOG],
        2,
        "params.size",
        _catalog_with(params="{ num_classes = 20, images_per_class = 5, size = 0, seed = 0 }"),
    ),
    # issue 24: pml: values that PML accepts but cannot run
    Case(
        "pml string margin",
        [*TRAIN, "--run-dir", "{out}/R", "--loss", "pml:TripletMarginLoss", "--set", 'loss.kwargs={{margin="abc"}}'],
        2,
        "fails on a batch",
    ),
    Case(
        "pml miner string margin",
        [*TRAIN, "--run-dir", "{out}/R", "--loss", "pml:TripletMarginLoss", "--set", 'loss.miner="TripletMarginMiner"']
        + ["--set", 'loss.miner_kwargs={{margin="x"}}'],
        2,
        "fails on a batch",
    ),
]


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path below root with its bytes (None for folders); links are recorded, not followed."""
    found: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            found[os.path.relpath(Path(dirpath) / name, root)] = None
        for name in filenames:
            path = Path(dirpath) / name
            # A FIFO is recorded, never read (reading one blocks until a writer comes).
            special = path.is_symlink() or not path.is_file()
            found[os.path.relpath(path, root)] = b"link or special" if special else path.read_bytes()
    return found


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_case(case: Case, digits_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox = tmp_path / "sandbox"
    data = sandbox / "data"
    shutil.copytree(digits_root, data)
    for folder in ("user", "runs"):
        (sandbox / folder).mkdir(parents=True)
    if case.setup is not None:
        case.setup(sandbox)
    folders = {
        "data": str(data),
        "runs": str(sandbox / "runs"),
        "user": str(sandbox / "user"),
        "out": str(sandbox / "out"),
    }
    argv = [arg.format(**folders) for arg in case.argv]
    monkeypatch.chdir(sandbox)  # a default ./runs would land here, and be caught below
    before = _tree(tmp_path)
    result = runner.invoke(app, argv)
    after = _tree(tmp_path)
    stderr = " ".join(result.stderr.split())
    assert result.exit_code == case.code, f"exit {result.exit_code}: {result.stderr}{result.stdout}"
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.stderr + result.stdout
    assert stderr.count("error:") == 1 and "hint:" in stderr, result.stderr
    assert case.message.lower() in stderr.lower(), result.stderr
    removed = [path for path in before if path not in after or after[path] != before[path]]
    assert not removed, f"changed or removed: {removed}"
    allowed = tuple(f"sandbox{os.sep}{name}" for name in case.may_write)
    written = [p for p in after if p not in before and not p.startswith(allowed)]
    assert not written, f"written outside the given folders: {written}"
    half = [p for p in after if p not in before and p.endswith("manifest.json")]
    assert not half, f"a rejected command left a run behind: {half}"
    assert not Path("/tmp/dmlb_abs").exists()
