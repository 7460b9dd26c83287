"""`dmlbench train`: options -> TrainConfig -> dmlbench.training.train(), with progress on stderr."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from dmlbench.cli._output import (
    ProgressRenderer,
    friendly_errors,
    out,
    printable,
    resolve_places,
)
from dmlbench.errors import UsageError
from dmlbench.losses.registry import loss_help
from dmlbench.models.registry import backbone_help

M, D, R = "Model and loss", "Data", "Run"

# The config key each option of `command` sets, by parameter name; typer names the flag after the parameter.
CONFIG_KEYS = {
    "loss": "loss.name",
    "dataset": "dataset",
    "epochs": "schedule.epochs",
    "steps": "schedule.steps",
    "seed": "seed",
    "val_classes": "validation.val_classes",
    "pretrained": "model.pretrained",
    "weights": "model.weights",
    "backbone": "model.backbone",
    "embedding_dim": "model.embedding_dim",
}


def flag_of(key: str) -> str | None:
    """The option of `dmlbench train` that sets dotted config `key` (`schedule.epochs` -> `--epochs`), if any."""
    params = {config_key: param for param, config_key in CONFIG_KEYS.items()}
    return "--" + params[key].replace("_", "-") if key in params else None


@friendly_errors
def command(
    loss: Annotated[
        str | None,
        typer.Option(help=loss_help(), rich_help_panel=M),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            help="Dataset name, or a folder of class folders / an OML CSV (prepared first; write ./pngs "
            "for a folder here) (default: glyphs, generated on first use).",
            rich_help_panel=D,
        ),
    ] = None,
    backbone: Annotated[
        str | None,
        typer.Option(help=f"Backbone (default: the dataset's): {backbone_help()}", rich_help_panel=M),
    ] = None,
    embedding_dim: Annotated[int | None, typer.Option(help="Embedding size (default 64).", rich_help_panel=M)] = None,
    catalog: Annotated[
        list[Path] | None,
        typer.Option(help="Extra dataset catalog TOML (as given to `prepare --catalog`).", rich_help_panel=D),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="TOML experiment config.", rich_help_panel=R)] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config key: key=value (TOML literal).", rich_help_panel=R),
    ] = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="Run folder (default: RUNS_ROOT/<run_id>).", rich_help_panel=R)
    ] = None,
    runs_root: Annotated[
        Path | None, typer.Option(envvar="DMLBENCH_RUNS_ROOT", help="Parent of run folders.", rich_help_panel=R)
    ] = None,
    data_root: Annotated[
        Path | None, typer.Option(envvar="DMLBENCH_DATA_ROOT", help="Prepared-data folder.", rich_help_panel=D)
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.", rich_help_panel=R)] = "auto",
    epochs: Annotated[int | None, typer.Option(help="Training epochs.", rich_help_panel=R)] = None,
    steps: Annotated[int | None, typer.Option(help="Stop after N optimizer steps.", rich_help_panel=R)] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.", rich_help_panel=R)] = None,
    val_classes: Annotated[
        float | None, typer.Option(help="Fraction of train classes held out for validation.", rich_help_panel=D)
    ] = None,
    pretrained: Annotated[
        bool | None,
        typer.Option("--pretrained/--no-pretrained", help="ImageNet weights for image backbones.", rich_help_panel=M),
    ] = None,
    weights: Annotated[
        Path | None,
        typer.Option(help="Local .safetensors/.pth weights for the backbone (offline).", rich_help_panel=M),
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from train/last.pt.", rich_help_panel=R)] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a run folder holding another run.", rich_help_panel=R)
    ] = False,
    no_eval: Annotated[
        bool, typer.Option("--no-eval", help="Skip the test-split evaluation at the end.", rich_help_panel=R)
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.", rich_help_panel=R)] = False,
    nproc_per_node: Annotated[
        int | None, typer.Option(help="Launch N DDP processes via torchrun.", rich_help_panel=R)
    ] = None,
) -> None:
    """Train an embedding with a metric-learning loss; writes runs/<run_id>/ and evaluates it on test."""
    if nproc_per_node is not None:
        _relaunch(nproc_per_node)
        return
    from dmlbench.cli._datasets import dataset_name
    from dmlbench.config import COMMAND_LINE, ConfigKeyError, load_config
    from dmlbench.rundir import RunDir
    from dmlbench.training import DistContext, train

    dataset = dataset_name(dataset, resolve_places(data_root), quiet=quiet)
    stored = RunDir(run_dir).config_path if run_dir is not None else None
    if config is None and resume and stored is not None and stored.is_file():
        config = stored  # `--resume --run-dir X` alone continues the stored run
    given: dict[str, Any] = {
        "loss": loss,
        "dataset": dataset,
        "epochs": epochs,
        "steps": steps,
        "seed": seed,
        "val_classes": val_classes,
        "pretrained": pretrained,
        # absolute: config.toml must still find the file when evaluated from another folder
        "weights": str(weights.resolve()) if weights is not None else None,
        "backbone": backbone,
        "embedding_dim": embedding_dim,
    }
    flags = {key: given[param] for param, key in CONFIG_KEYS.items()}
    try:
        cfg = load_config(config, set_ or [], flags)
    except ConfigKeyError as refused:
        flag = flag_of(refused.key)
        if refused.source != COMMAND_LINE or flag is None:
            raise
        raise refused.from_source(f"the {flag} option") from None
    dist = DistContext(
        int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0"))
    )
    with ProgressRenderer(quiet=quiet or not dist.is_main) as renderer:
        summary = train(
            cfg,
            run_dir,
            places=resolve_places(data_root, runs_root, catalog),
            resume=resume,
            force=force,
            device=device,
            on_event=renderer,
            evaluate_at_end=not no_eval,
            dist=dist,
        )
    if dist.is_main:
        metrics = "  ".join(
            f"{k} {v:.4f}" for k, v in (summary.test_metrics or {}).items() if k.startswith(("recall@1", "nmi"))
        )
        loss_text = f"{summary.final_loss:.4f}" if summary.final_loss is not None else "n/a"
        out.print(
            printable(
                f"{summary.run_id}: {summary.steps} steps, {summary.epochs} epochs, loss {loss_text}, "
                f"{summary.images_per_s or 0:.0f} img/s  {metrics}  -> {summary.run_dir}"
            ),
            markup=False,
            highlight=False,
        )


def _relaunch(nproc: int) -> None:
    """Re-run this command under torch.distributed.run with N processes (without --nproc-per-node)."""
    if nproc < 1:
        raise UsageError("--nproc-per-node must be at least 1", hint="e.g. --nproc-per-node 2")
    from torch.distributed.run import main as torchrun

    argv, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--nproc-per-node":
            skip = True
        elif not arg.startswith("--nproc-per-node="):
            argv.append(arg)
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    try:
        torchrun(["--standalone", f"--nproc-per-node={nproc}", "-m", "dmlbench", *argv])
    except ChildFailedError as failed:  # the ranks already printed their error: keep their exit code
        codes = [f.exitcode for f in failed.failures.values()]
        raise typer.Exit(code=next((c for c in codes if c > 0), 1)) from None
