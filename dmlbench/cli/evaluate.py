"""`dmlbench evaluate`: score a trained run, or embeddings produced anywhere else."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from dmlbench.cli._output import ProgressRenderer, friendly_errors, out, resolve_data_root, setup_logging
from dmlbench.errors import UsageError


def _ints(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--recall-k {text!r} is not a list of integers", hint="e.g. --recall-k 1,2,4,8") from None


def _render(metrics: dict[str, float], info: dict[str, Any], as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps({"metrics": metrics, **info}))
        return
    table = Table(title=" · ".join(f"{k} {v}" for k, v in info.items() if k != "path"), title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.4f}")
    out.print(table)
    if "path" in info:
        out.print(f"wrote {info['path']}", markup=False, highlight=False)


@friendly_errors
def command(
    run_dir: Annotated[Path | None, typer.Argument(help="Run directory written by `dmlbench train`.")] = None,
    split: Annotated[str, typer.Option(help="Split to embed and score: test or val.")] = "test",
    recall_k: Annotated[
        str | None, typer.Option("--recall-k", help="Comma-separated K (default: the dataset's).")
    ] = None,
    metrics: Annotated[
        str | None, typer.Option(help="Comma-separated subset: recall,precision@1,r_precision,map@r,nmi,f1.")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N (never silently replaced).")] = "auto",
    distance: Annotated[str, typer.Option(help="cosine (on L2-normalised vectors) or euclidean.")] = "cosine",
    save_embeddings: Annotated[bool, typer.Option(help="Also write eval/SPLIT/embeddings.npy + labels.npy.")] = False,
    data_root: Annotated[Path | None, typer.Option(help="Prepared-data folder (env: DMLBENCH_DATA_ROOT).")] = None,
    embeddings: Annotated[
        Path | None, typer.Option(help="Score these embeddings (.npy/.npz/.pt) instead of a run.")
    ] = None,
    labels: Annotated[Path | None, typer.Option(help="Labels for --embeddings (.npy/.npz/.pt).")] = None,
    kmeans_niter: Annotated[int, typer.Option(help="k-means iterations for NMI/F1.")] = 25,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Compute Recall@K, P@1, R-Precision, MAP@R, NMI and F1 (definitions: docs/metrics.md)."""
    setup_logging()
    ks = _ints(recall_k)
    chosen = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    if distance not in ("cosine", "euclidean"):
        raise UsageError(f"unknown --distance {distance!r}", hint="use cosine or euclidean")
    dist: Literal["cosine", "euclidean"] = "cosine" if distance == "cosine" else "euclidean"
    if (run_dir is None) == (embeddings is None):
        raise UsageError("give either RUN_DIR or --embeddings (not both)", hint="see `dmlbench evaluate --help`")
    info: dict[str, Any] = {}
    with ProgressRenderer(quiet=as_json) as progress:
        if embeddings is not None:
            from dmlbench.evaluation import evaluate_embeddings
            from dmlbench.evaluation.io import load_embeddings

            loaded = load_embeddings(embeddings, labels)
            outcome = evaluate_embeddings(
                loaded.embeddings,
                loaded.labels,
                recall_k=ks or (1, 2, 4, 8),
                metrics=chosen,
                device=device,
                distance=dist,
                gallery_embeddings=loaded.gallery_embeddings,
                gallery_labels=loaded.gallery_labels,
                kmeans_niter=kmeans_niter,
                on_event=progress,
            )
        elif run_dir is not None:
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
            )
            assert result.outcome is not None
            outcome, info = result.outcome, {"path": str(result.path)}
    summary = ("n_queries", "n_gallery", "lone_queries", "protocol", "backend")
    info = {**{key: getattr(outcome, key) for key in summary}, "seconds": round(outcome.seconds, 2), **info}
    _render(outcome.metrics, info, as_json)
