"""The paper's published numbers, stored as data (paper_results.toml) with their source and verification."""

from __future__ import annotations

import functools
import importlib.resources
from dataclasses import dataclass
from typing import Any

from dmlbench.utils import toml as tomllib


@dataclass(frozen=True)
class PaperRow:
    """One method's published numbers on one dataset, in percent."""

    dataset: str
    loss: str
    metrics: dict[str, float]
    unverified: frozenset[str]


@dataclass(frozen=True)
class PaperResults:
    """Every published row plus the citation and verification notes."""

    citation: str
    verification: str
    backbone: str
    embedding_dim: int
    rows: dict[tuple[str, str], PaperRow]

    def row(self, dataset: str, loss: str) -> PaperRow | None:
        """The published row for (dataset, loss), or None when the paper has none."""
        return self.rows.get((dataset, loss))

    def datasets(self) -> list[str]:
        """Datasets with published numbers."""
        return sorted({dataset for dataset, _ in self.rows})


def parse_paper_results(data: dict[str, Any]) -> PaperResults:
    """Build PaperResults from the parsed TOML; a malformed file is a bug in the package, so it raises ValueError."""
    source = data.get("source")
    if not isinstance(source, dict):
        raise ValueError("paper_results.toml lacks its [source] table")
    rows: dict[tuple[str, str], PaperRow] = {}
    for dataset, losses in data.items():
        if dataset == "source":
            continue
        if not isinstance(losses, dict):
            raise ValueError(f"paper_results.toml: [{dataset}] must be a table of losses")
        for loss, entry in losses.items():
            metrics = {str(k): float(v) for k, v in entry["metrics"].items()}
            unverified = frozenset(str(m) for m in entry.get("unverified", []))
            if not unverified <= set(metrics):
                raise ValueError(f"paper_results.toml: [{dataset}.{loss}] marks unknown metrics unverified")
            rows[(dataset, loss)] = PaperRow(dataset, loss, metrics, unverified)
    return PaperResults(
        citation=str(source["citation"]),
        verification=str(source["verification"]),
        backbone=str(source["backbone"]),
        embedding_dim=int(source["embedding_dim"]),
        rows=rows,
    )


@functools.cache
def load_paper_results() -> PaperResults:
    """The published numbers shipped with dmlbench (cached)."""
    text = importlib.resources.files("dmlbench.reporting").joinpath("paper_results.toml").read_text("utf-8")
    return parse_paper_results(tomllib.loads(text))
