"""Datasets: the catalog (datasets.toml), `prepare`, and the read API over prepared datasets.

Importing this package never imports torch or PIL; the torch Dataset lives in
`dmlbench.datasets.torch_data` and the P x K batch sampler in `dmlbench.datasets.sampler`.
"""

from __future__ import annotations

from dmlbench.datasets.catalog import DatasetStatus, catalog_specs, get_spec, list_status, load_catalog
from dmlbench.datasets.pipeline import open_or_prepare, prepare
from dmlbench.datasets.prepared import PreparedDataset, load_index, open_prepared
from dmlbench.datasets.spec import DatasetSpec, FileSpec

__all__ = [
    "DatasetSpec",
    "DatasetStatus",
    "FileSpec",
    "PreparedDataset",
    "catalog_specs",
    "get_spec",
    "list_status",
    "load_catalog",
    "load_index",
    "open_or_prepare",
    "open_prepared",
    "prepare",
]
