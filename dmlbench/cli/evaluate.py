"""`dmlbench evaluate`: score a trained run, embeddings produced anywhere else, or a baseline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from dmlbench.cli._output import (
    ProgressRenderer,
    friendly_errors,
    out,
    printable,
    resolve_data_root,
    resolve_runs_root,
    setup_logging,
    shown,
)
from dmlbench.errors import UsageError

S, F, B, A = "Scoring", "Embeddings files", "Baselines", "Beyond exact search (labelled in metrics.json)"


def _ints(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--recall-k {text!r} is not a list of integers", hint="e.g. --recall-k 1,2,4,8") from None


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


def _refuse(given: dict[str, bool], mode: str, hint: str) -> None:
    """One usage error naming the first flag that does not apply to `mode`."""
    for flag, present in given.items():
        if present:
            raise UsageError(f"{flag} does not apply to {mode}", hint=hint)


@friendly_errors
def command(
    run_dir: Annotated[Path | None, typer.Argument(help="Run directory written by `dmlbench train`.")] = None,
    split: Annotated[str, typer.Option(help="Split to embed and score: test or val.", rich_help_panel=S)] = "test",
    recall_k: Annotated[
        str | None, typer.Option("--recall-k", help="Comma-separated K (default: the dataset's).", rich_help_panel=S)
    ] = None,
    metrics: Annotated[
        str | None,
        typer.Option(help="Comma-separated subset: recall,precision@1,r_precision,map@r,nmi,f1.", rich_help_panel=S),
    ] = None,
    device: Annotated[
        str, typer.Option(help="auto, cpu, cuda or cuda:N (never silently replaced).", rich_help_panel=S)
    ] = "auto",
    distance: Annotated[
        str, typer.Option(help="cosine (on L2-normalised vectors) or euclidean.", rich_help_panel=S)
    ] = "cosine",
    save_embeddings: Annotated[
        bool, typer.Option(help="Also write eval/SPLIT/embeddings.npy + labels.npy.", rich_help_panel=S)
    ] = False,
    data_root: Annotated[
        Path | None, typer.Option(help="Prepared-data folder (env: DMLBENCH_DATA_ROOT).", rich_help_panel=S)
    ] = None,
    kmeans_niter: Annotated[int, typer.Option(help="k-means iterations for NMI/F1.", rich_help_panel=S)] = 25,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.", rich_help_panel=S)] = False,
    catalog: Annotated[
        list[Path] | None,
        typer.Option("--catalog", help="Extra catalog TOML file with your own datasets.", rich_help_panel=S),
    ] = None,
    queries: Annotated[
        int | None,
        typer.Option(help="Score a seeded sample of N queries (exact search, 95% intervals).", rich_help_panel=A),
    ] = None,
    index: Annotated[
        str,
        typer.Option(
            help="flat (exact), ivf[:nlist=N,nprobe=N] or hnsw[:m=N,ef_search=N,ef_construction=N] (faiss).",
            rich_help_panel=A,
        ),
    ] = "flat",
    agreement_queries: Annotated[
        int, typer.Option(help="Queries on which an --index is compared with exact search.", rich_help_panel=A)
    ] = 1000,
    cluster_sample: Annotated[
        int | None,
        typer.Option(
            help="k-means (NMI/F1) on a class-stratified sample of N items; 0 = every item "
            "\\[default: automatic above a size].",
            rich_help_panel=A,
        ),
    ] = None,
    embeddings: Annotated[
        Path | None, typer.Option(help="Score these embeddings (.npy/.npz/.pt) instead of a run.", rich_help_panel=F)
    ] = None,
    labels: Annotated[Path | None, typer.Option(help="Labels for --embeddings.", rich_help_panel=F)] = None,
    gallery_embeddings: Annotated[
        Path | None, typer.Option(help="Gallery embeddings (query-vs-gallery protocol).", rich_help_panel=F)
    ] = None,
    gallery_labels: Annotated[
        Path | None, typer.Option(help="Labels for --gallery-embeddings.", rich_help_panel=F)
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option(help="Score a baseline instead of a run: untrained or raw (needs --dataset).", rich_help_panel=B),
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="Dataset of the --baseline (a name, or a folder / OML CSV).", rich_help_panel=B)
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the untrained network (default 0).", rich_help_panel=B)
    ] = None,
    backbone: Annotated[str | None, typer.Option(help="Backbone (default: the dataset's).", rich_help_panel=B)] = None,
    weights: Annotated[
        Path | None, typer.Option(help="Local backbone weights for --baseline untrained.", rich_help_panel=B)
    ] = None,
    runs_root: Annotated[
        Path | None,
        typer.Option(help="Parent of run folders; baselines go to RUNS_ROOT/baselines/.", rich_help_panel=B),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Recompute a baseline that is already stored.", rich_help_panel=B)
    ] = False,
) -> None:
    """Compute Recall@K, P@1, R-Precision, MAP@R, NMI and F1 (definitions: docs/metrics.md).

    Score a run folder (RUN_DIR), embedding files (--embeddings), or a baseline (--baseline untrained|raw
    --dataset NAME) written to RUNS_ROOT/baselines/.
    """
    setup_logging()
    from dmlbench.config import MAX_SEED

    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise UsageError(f"--seed must be non-negative and at most {MAX_SEED}, not {seed}", hint="e.g. --seed 0")
    ks = _ints(recall_k)
    chosen = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    if distance not in ("cosine", "euclidean"):
        raise UsageError(f"unknown --distance {distance!r}", hint="use cosine or euclidean")
    dist: Literal["cosine", "euclidean"] = "cosine" if distance == "cosine" else "euclidean"
    modes = [name for name, on in (("RUN_DIR", run_dir), ("--embeddings", embeddings), ("--baseline", baseline)) if on]
    if len(modes) != 1:
        given = " and ".join(modes) if modes else "none of them"
        raise UsageError(
            f"give exactly one of RUN_DIR, --embeddings or --baseline (got {given})",
            hint="see `dmlbench evaluate --help`",
        )
    baseline_only = {
        "--dataset": dataset is not None,
        "--seed": seed is not None,
        "--backbone": backbone is not None,
        "--weights": weights is not None,
        "--runs-root": runs_root is not None,
        "--force": force,
    }
    files_only = {
        "--labels": labels is not None,
        "--gallery-embeddings": gallery_embeddings is not None,
        "--gallery-labels": gallery_labels is not None,
    }
    catalogs = tuple(catalog or ())
    beyond: dict[str, Any] = {
        "queries": queries,
        "index": index,
        "agreement_queries": agreement_queries,
        "cluster_sample": cluster_sample,
    }
    info: dict[str, Any] = {}
    with ProgressRenderer(quiet=as_json) as progress:
        if baseline is not None:
            _refuse(
                {
                    **files_only,
                    "--split": split != "test",
                    "--recall-k": ks is not None,
                    "--metrics": chosen is not None,
                    "--distance": dist != "cosine",
                    "--save-embeddings": save_embeddings,
                    "--kmeans-niter": kmeans_niter != 25,
                    "--queries": queries is not None,
                    "--index": index != "flat",
                    "--agreement-queries": agreement_queries != 1000,
                    "--cluster-sample": cluster_sample is not None,
                },
                "--baseline",
                "a baseline scores the test split with every metric, like trained runs; re-score its folder "
                "with `dmlbench evaluate RUNS_ROOT/baselines/NAME --metrics ...`",
            )
            if dataset is None:
                raise UsageError("--baseline needs --dataset NAME", hint="e.g. --baseline raw --dataset digits")
            from dmlbench.cli._datasets import dataset_name
            from dmlbench.cli._output import resolve_places
            from dmlbench.evaluation.baselines import run_baseline

            result = run_baseline(
                baseline,
                dataset_name(dataset, resolve_places(data_root), quiet=as_json) or dataset,
                runs_root=resolve_runs_root(runs_root),
                data_root=resolve_data_root(data_root),
                seed=0 if seed is None else seed,
                backbone=backbone,
                device=device,
                catalog=catalogs,
                on_event=progress,
                force=force,
                weights=weights,
            )
            info = {"path": str(result.path), "reused": result.reused}
            if result.outcome is None:
                _render(result.metrics, info, as_json)
                return
            outcome = result.outcome
        elif embeddings is not None:
            _refuse(
                {**baseline_only, "--split": split != "test", "--save-embeddings": save_embeddings},
                "--embeddings",
                "those options are for run folders and baselines",
            )
            from dmlbench.evaluation.files import evaluate_files

            outcome = evaluate_files(
                embeddings,
                labels,
                recall_k=ks or (1, 2, 4, 8),
                metrics=chosen,
                device=device,
                distance=dist,
                gallery_embeddings=gallery_embeddings,
                gallery_labels=gallery_labels,
                kmeans_niter=kmeans_niter,
                on_event=progress,
                **beyond,
            )
        else:
            assert run_dir is not None
            _refuse(
                {**baseline_only, **files_only},
                "a RUN_DIR",
                "those options are for --baseline and --embeddings",
            )
            from dmlbench.evaluation import evaluate

            result = evaluate(
                run_dir,
                split=split,
                recall_k=ks,
                metrics=chosen,
                device=device,
                data_root=resolve_data_root(data_root),
                save_embeddings=save_embeddings,
                distance=dist,
                kmeans_niter=kmeans_niter,
                on_event=progress,
                catalog=catalogs,
                **beyond,
            )
            assert result.outcome is not None
            outcome, info = result.outcome, {"path": str(result.path)}
    summary = ("n_queries", "n_gallery", "lone_queries", "protocol", "backend")
    info = {**{key: getattr(outcome, key) for key in summary}, "seconds": round(outcome.seconds, 2), **info}
    if outcome.approximation:
        info["approximation"] = outcome.approximation
    _render(outcome.metrics, info, as_json, outcome.intervals)
