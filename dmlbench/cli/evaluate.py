"""`dmlbench evaluate RUN_DIR`, `evaluate-embeddings FILE` and `evaluate-baseline KIND`: three thin commands.

The scoring flags (--recall-k, --metrics, --device, ..., --cluster-sample) are declared once, in `SCORING`,
and reach a command as one `EvalOptions` through `scoring_flags`. The spellings of the single command these
replace (`evaluate --embeddings ...`, `evaluate --baseline ...`) are routed here by `legacy_evaluate`.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from dmlbench.cli._output import (
    ProgressRenderer,
    err,
    friendly_errors,
    out,
    printable,
    resolve_places,
    setup_logging,
    shown,
)
from dmlbench.errors import UsageError
from dmlbench.utils.signature import flag_group

if TYPE_CHECKING:
    from dmlbench.evaluation import EvalOptions, EvalOutcome

S, F, B, A = "Scoring", "Embeddings files", "Baselines", "Beyond exact search (labelled in metrics.json)"

DataRoot = Annotated[
    Path | None, typer.Option(help="Prepared-data folder (env: DMLBENCH_DATA_ROOT).", rich_help_panel=S)
]
Catalogs = Annotated[
    list[Path] | None,
    typer.Option("--catalog", help="Extra catalog TOML file with your own datasets.", rich_help_panel=S),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.", rich_help_panel=S)]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N (never silently replaced).", rich_help_panel=S)]


def _scoring(name: str, default: Any, kind: Any, help: str, panel: str = S) -> inspect.Parameter:
    """One scoring flag, `--name-with-dashes`, as the keyword-only parameter `flag_group` adds to a command."""
    option = Annotated[kind, typer.Option(help=help, rich_help_panel=panel)]
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=option)


# Every scoring flag, once: an evaluation option is a field of EvalOptions, one entry here, and its code.
SCORING = (
    _scoring("recall_k", None, str | None, "Comma-separated K (default: the dataset's)."),
    _scoring("metrics", None, str | None, "Comma-separated subset: recall,precision@1,r_precision,map@r,nmi,f1."),
    _scoring("device", "auto", str, "auto, cpu, cuda or cuda:N (never silently replaced)."),
    _scoring("distance", "cosine", str, "cosine (on L2-normalised vectors) or euclidean."),
    _scoring("kmeans_niter", 25, int, "k-means iterations for NMI/F1."),
    _scoring("queries", None, int | None, "Score a seeded sample of N queries (exact search, 95% intervals).", A),
    _scoring(
        "index",
        "flat",
        str,
        "flat (exact), ivf[:nlist=N,nprobe=N] or hnsw[:m=N,ef_search=N,ef_construction=N] (faiss).",
        A,
    ),
    _scoring("agreement_queries", 1000, int, "Queries on which an --index is compared with exact search.", A),
    _scoring(
        "cluster_sample",
        None,
        int | None,
        "k-means (NMI/F1) on a class-stratified sample of N items; 0 = every item \\[default: automatic above a size].",
        A,
    ),
)


def _ints(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--recall-k {text!r} is not a list of integers", hint="e.g. --recall-k 1,2,4,8") from None


def _eval_options(recall_k: str | None, metrics: str | None, distance: str, **fields: Any) -> EvalOptions:
    """The scoring flags as one validated EvalOptions (a bad value: one usage error naming its flag)."""
    from dmlbench.evaluation import EvalOptions

    if distance not in ("cosine", "euclidean"):
        raise UsageError(f"unknown --distance {distance!r}", hint="use cosine or euclidean")
    chosen = tuple(m.strip() for m in metrics.split(",") if m.strip()) if metrics else None
    ks = _ints(recall_k)
    return EvalOptions(recall_k=tuple(ks) if ks else None, metrics=chosen, distance=distance, **fields)  # type: ignore[arg-type]


# The scoring flags handed to a command as its one `options: EvalOptions` (typer sees the flags).
scoring_flags = flag_group("options", SCORING, lambda flags: _eval_options(**flags))


@friendly_errors
@scoring_flags
def command(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by `dmlbench train`.")],
    split: Annotated[str, typer.Option(help="Split to embed and score: test or val.", rich_help_panel=S)] = "test",
    save_embeddings: Annotated[
        bool, typer.Option(help="Also write eval/SPLIT/embeddings.npy + labels.npy.", rich_help_panel=S)
    ] = False,
    data_root: DataRoot = None,
    catalog: Catalogs = None,
    as_json: AsJson = False,
    *,
    options: EvalOptions,
) -> None:
    """Score a run folder: Recall@K, P@1, R-Precision, MAP@R, NMI and F1 (definitions: docs/metrics.md).

    Embeddings made elsewhere: `dmlbench evaluate-embeddings`; baselines: `dmlbench evaluate-baseline`.
    """
    setup_logging()
    from dataclasses import replace

    from dmlbench.evaluation import evaluate

    options = replace(options, split=split, save_embeddings=save_embeddings)
    with ProgressRenderer(quiet=as_json) as progress:
        result = evaluate(run_dir, options, places=resolve_places(data_root, None, catalog), on_event=progress)
    assert result.outcome is not None
    _show(result.outcome, {"path": str(result.path)}, as_json)


@friendly_errors
@scoring_flags
def embeddings_command(
    embeddings: Annotated[
        Path, typer.Argument(help="Embeddings to score (.npy/.npz/.pt), made by `dmlbench embed` or elsewhere.")
    ],
    labels: Annotated[Path | None, typer.Option(help="Labels of EMBEDDINGS.", rich_help_panel=F)] = None,
    gallery_embeddings: Annotated[
        Path | None, typer.Option(help="Gallery embeddings (query-vs-gallery protocol).", rich_help_panel=F)
    ] = None,
    gallery_labels: Annotated[
        Path | None, typer.Option(help="Labels for --gallery-embeddings.", rich_help_panel=F)
    ] = None,
    as_json: AsJson = False,
    *,
    options: EvalOptions,
) -> None:
    """Score embeddings produced anywhere (nothing is written). Metric definitions: docs/metrics.md."""
    setup_logging()
    from dmlbench.evaluation.files import evaluate_files

    with ProgressRenderer(quiet=as_json) as progress:
        outcome = evaluate_files(
            embeddings,
            labels,
            options,
            gallery_embeddings=gallery_embeddings,
            gallery_labels=gallery_labels,
            on_event=progress,
        )
    _show(outcome, {}, as_json)


@friendly_errors
def baseline_command(
    kind: Annotated[str, typer.Argument(help="untrained (the network before training) or raw (the pixels).")],
    dataset: Annotated[
        str | None, typer.Option(help="Dataset (a name, or a folder / OML CSV).", rich_help_panel=B)
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the untrained network (default 0).", rich_help_panel=B)
    ] = None,
    backbone: Annotated[str | None, typer.Option(help="Backbone (default: the dataset's).", rich_help_panel=B)] = None,
    weights: Annotated[
        Path | None, typer.Option(help="Local backbone weights for the untrained baseline.", rich_help_panel=B)
    ] = None,
    runs_root: Annotated[
        Path | None,
        typer.Option(help="Parent of run folders; baselines go to RUNS_ROOT/baselines/.", rich_help_panel=B),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Recompute a baseline that is already stored.", rich_help_panel=B)
    ] = False,
    device: Device = "auto",
    data_root: DataRoot = None,
    catalog: Catalogs = None,
    as_json: AsJson = False,
) -> None:
    """Score a baseline (test split, every metric) into RUNS_ROOT/baselines/, a folder `report` reads as a run.

    Re-score one with other options: `dmlbench evaluate RUNS_ROOT/baselines/NAME --metrics ...`.
    """
    setup_logging()
    from dmlbench.config import MAX_SEED

    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise UsageError(f"--seed must be non-negative and at most {MAX_SEED}, not {seed}", hint="e.g. --seed 0")
    if dataset is None:
        raise UsageError("a baseline needs --dataset NAME", hint="e.g. dmlbench evaluate-baseline raw --dataset digits")
    from dmlbench.cli._datasets import dataset_name
    from dmlbench.evaluation.baselines import run_baseline

    places = resolve_places(data_root, runs_root, catalog)
    with ProgressRenderer(quiet=as_json) as progress:
        result = run_baseline(
            kind,
            dataset_name(dataset, places, quiet=as_json) or dataset,
            places=places,
            seed=0 if seed is None else seed,
            backbone=backbone,
            device=device,
            on_event=progress,
            force=force,
            weights=weights,
        )
    info = {"path": str(result.path), "reused": result.reused}
    if result.outcome is None:
        _render(result.metrics, info, as_json)
        return
    _show(result.outcome, info, as_json)


# The flags that picked a mode of the single command these replace, and the command each now names.
LEGACY = {"--embeddings": "evaluate-embeddings", "--baseline": "evaluate-baseline"}
# Flags the embeddings mode accepted and ignored: still accepted, still ignored.
_IGNORED = {"evaluate-embeddings": ("--data-root", "--catalog")}


def legacy_evaluate(args: list[str]) -> list[str]:
    """`evaluate --embeddings FILE ...` / `evaluate --baseline KIND ...` as the command that now does it
    (a one-line hint on stderr); any other command line unchanged."""
    if not args or args[0] != "evaluate":
        return args
    rest = args[1:]
    for position, arg in enumerate(rest):
        flag, eq, value = arg.partition("=")
        if flag not in LEGACY:
            continue
        target = LEGACY[flag]
        if eq:
            moved = [*rest[:position], value, *rest[position + 1 :]]
        else:
            moved = [*rest[:position], *rest[position + 1 :]]  # its value stays, now the positional
        err.print(
            f"note: `dmlbench evaluate {flag}` is now `dmlbench {target}`; the old spelling still works",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return [target, *_drop_flags(moved, _IGNORED.get(target, ()))]
    return args


def _drop_flags(args: list[str], flags: tuple[str, ...]) -> list[str]:
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in flags:
            skip = True
        elif arg.partition("=")[0] not in flags:
            kept.append(arg)
    return kept


def _show(outcome: EvalOutcome, info: dict[str, Any], as_json: bool) -> None:
    summary = ("n_queries", "n_gallery", "lone_queries", "protocol", "backend")
    info = {**{key: getattr(outcome, key) for key in summary}, "seconds": round(outcome.seconds, 2), **info}
    if outcome.approximation:
        info["approximation"] = outcome.approximation
    _render(outcome.metrics, info, as_json, outcome.intervals)


def _render(
    metrics: dict[str, float],
    info: dict[str, Any],
    as_json: bool,
    intervals: dict[str, tuple[float, float]] | None = None,
) -> None:
    intervals = intervals or {}
    if as_json:
        extra = {"intervals": {k: list(v) for k, v in intervals.items()}} if intervals else {}
        out.print_json(printable(json.dumps({"metrics": metrics, **extra, **info})))
        return
    facts = {k: v for k, v in info.items() if k not in ("path", "reused", "approximation")}
    table = Table(title=shown(" · ".join(f"{k} {v}" for k, v in facts.items())), title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    if intervals:
        table.add_column("95% interval", justify="right")
    for name, value in metrics.items():
        cells = [shown(name), f"{value:.4f}"]
        if intervals:
            low_high = intervals.get(name)
            cells.append(f"[{low_high[0]:.4f}, {low_high[1]:.4f}]" if low_high else "")
        table.add_row(*cells)
    out.print(table)
    for line in approximation_lines(info.get("approximation") or {}):
        out.print(line, markup=False, highlight=False)
    if "path" in info:
        verb = "reused" if info.get("reused") else "wrote"
        out.print(printable(f"{verb} {info['path']}"), markup=False, highlight=False)


def approximation_lines(approximation: dict[str, Any]) -> list[str]:
    """One plain line per shortcut taken, so a table of approximate numbers never reads as exact."""
    from dmlbench.evaluation.describe import describe_approximation

    return describe_approximation(approximation)
