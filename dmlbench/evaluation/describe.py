"""The one wording of what an evaluation approximated (metrics.json `approximation`), for CLI and reports.

Pure text from the stored dict, tolerant of missing keys: reports read files written by other versions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def _points(value: Any) -> str:
    return f"{100.0 * float(value):.2f}" if isinstance(value, int | float) else "?"


def describe_approximation(approximation: Mapping[str, Any]) -> list[str]:
    """One sentence per shortcut (query sample, approximate index, k-means sample); [] when exact."""
    lines: list[str] = []
    sample = approximation.get("queries")
    if isinstance(sample, Mapping):
        lines.append(
            f"retrieval metrics from a seeded sample of {_count(sample.get('sampled'))} of "
            f"{_count(sample.get('of'))} queries (seed {sample.get('seed', '?')}), searched exactly against the "
            f"whole gallery; {sample.get('intervals', '95% intervals')}"
        )
    index = approximation.get("index")
    if isinstance(index, Mapping):
        params = index.get("params") or {}
        shown = ", ".join(f"{k}={v}" for k, v in sorted(params.items())) if isinstance(params, Mapping) else ""
        bounds = index.get("recall_bounds") or {}
        parts = []
        if isinstance(bounds, Mapping):
            for metric, bound in bounds.items():
                if isinstance(bound, Mapping):
                    parts.append(
                        f"|Δ{metric}| ≤ {_points(bound.get('changed_upper95'))} points "
                        f"(≤ {_points(bound.get('bound_upper95'))} from top-K set agreement)"
                    )
        lines.append(
            f"approximate search: faiss {index.get('kind', '?')} ({shown}); against exact search on "
            f"{_count(index.get('agreement_queries'))} sampled queries: top-1 agreement "
            f"{_points(index.get('top1_agreement'))}%" + (f"; 95% bounds: {', '.join(parts)}" if parts else "")
        )
    clustering = approximation.get("clustering")
    if isinstance(clustering, Mapping):
        how = "automatic above the k-means cost limit" if clustering.get("automatic") else "--cluster-sample"
        lines.append(
            f"NMI/F1 from k-means on a class-stratified sample of {_count(clustering.get('sample'))} of "
            f"{_count(clustering.get('of'))} items ({_count(clustering.get('classes'))} classes; {how})"
        )
    return lines


CLUSTERING_METRICS = ("nmi", "f1")


def approximated(metric: str, approximation: Mapping[str, Any]) -> bool:
    """Whether `metric` was not computed exactly: retrieval metrics under a query sample or an approximate
    index, NMI/F1 under a k-means sample."""
    if metric in CLUSTERING_METRICS:
        return "clustering" in approximation
    return "queries" in approximation or "index" in approximation
