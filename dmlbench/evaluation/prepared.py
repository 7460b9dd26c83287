"""Open the prepared dataset an evaluation needs; generated datasets are prepared on demand.

This is the same rule `dmlbench train` applies (training/data.py `open_dataset`); it belongs with the
datasets package, where both can call it (see the note in docs/metrics.md, "Baselines").
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dmlbench.errors import MissingInputError
from dmlbench.events import Event, EventHandler, emit
from dmlbench.paths import check_name

if TYPE_CHECKING:
    from dmlbench.datasets import PreparedDataset


def open_or_prepare(
    name: str,
    *,
    data_root: str | os.PathLike[str],
    on_event: EventHandler | None = None,
    catalog: Sequence[str | os.PathLike[str]] = (),
) -> PreparedDataset:
    """The prepared dataset `name`; one with nothing to download (digits, synthetic) is prepared here.

    A dataset that needs files keeps `open_prepared`'s MissingInputError naming `dmlbench prepare NAME`.
    The name is checked first: it may come from an untrusted run folder and becomes a path.
    """
    from dmlbench.datasets import get_spec, open_prepared, prepare
    from dmlbench.datasets.sources import SOURCES

    check_name(name, "dataset")
    root, catalogs = Path(data_root), [Path(c) for c in catalog]
    try:
        return open_prepared(name, data_root=root)
    except MissingInputError:
        spec = get_spec(name, catalog=catalogs)
        if SOURCES.get(spec.source).needs_files:
            raise
    emit(on_event, Event("log", "prepare", message=f"preparing {name} in {root}"))
    return prepare(name, data_root=root, on_event=on_event, catalog=catalogs)
