"""`prepare`: the same template for every dataset (acquire, build, split, check, swap into place).

Everything is built in a staging folder inside the dataset folder and moved into place at the end;
`prepared.json` is written last. A failure at any step removes the staging folder, so a dataset is
either fully prepared or not prepared at all. Verified downloads and `.part` files stay in `raw/`
so that a rerun resumes instead of starting over.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dmlbench.datasets.cache import remove_caches
from dmlbench.datasets.catalog import get_spec
from dmlbench.datasets.download import download_file
from dmlbench.datasets.prepared import (
    ARRAY_FILE,
    BOX_COLUMNS,
    IMAGES_DIR,
    INDEX_FILE,
    INFO_FILE,
    META_DIR,
    PREPARE_LOCK,
    RAW_DIR,
    SEQUENCE_COLUMN,
    PreparedDataset,
    check_no_links,
    dataset_dir,
    open_prepared,
    write_info,
)
from dmlbench.datasets.sources import SOURCES
from dmlbench.datasets.sources.base import Source, SourceInputs
from dmlbench.datasets.spec import DatasetSpec
from dmlbench.errors import ChecksumError, EnvironmentFailure, MissingInputError, UsageError, from_os_error
from dmlbench.events import Event, EventHandler, emit
from dmlbench.paths import Places, StrPath, check_name
from dmlbench.utils.locks import exclusive_lock
from dmlbench.utils.npy import load_npy

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

STAGING_PREFIX = ".staging-"
_PAYLOAD = (IMAGES_DIR, ARRAY_FILE, META_DIR, INDEX_FILE)


def prepare(
    name: str,
    places: Places,
    *,
    source: StrPath | None = None,
    force: bool = False,
    on_event: EventHandler | None = None,
    spec: DatasetSpec | None = None,
) -> PreparedDataset:
    """Prepare dataset `name` under `places.data_root` and return it; instant when it is already prepared.

    `source` is a `--from` path (downloaded archive, file or folder) used instead of downloading.
    The spec comes from `places`' catalogs; `spec` replaces the catalog entry entirely (tests, scripting).
    """
    data_root = places.data_root
    spec = spec if spec is not None else get_spec(name, places)
    source = Path(source) if source is not None else None
    root = dataset_dir(spec.name, data_root)
    reader: Source = SOURCES.get(spec.source)()
    reader.check_params(spec)  # a spec built in Python (prepare(spec=...)) skipped the catalog's check
    if (root / INFO_FILE).is_file() and not force:
        emit(on_event, Event("log", spec.name, message=f"{spec.name} is already prepared in {root}"))
        prepared = open_prepared(spec.name, data_root)
        reason = reader.stale_reason(spec, prepared.info)
        if reason is not None:
            log.warning("%s", reason)
            emit(on_event, Event("log", spec.name, message=f"warning: {reason}"))
        return prepared
    if source is not None and not reader.needs_files:
        raise UsageError(
            f"{spec.name} is generated or bundled; --from is not used for it",
            hint=f"run `dmlbench prepare {spec.name}` without --from",
        )
    if root.is_dir():
        check_no_links(root, spec)  # before the lock file is opened: nothing is written through a link
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = exclusive_lock(root / PREPARE_LOCK, holder=f"prepare {spec.name}", what=f"dataset folder {root}")
        lock.__enter__()
    except (FileExistsError, NotADirectoryError):
        raise UsageError(f"{root} is a file or inside one", hint="pass a folder to --data-root") from None
    except OSError as err:
        raise EnvironmentFailure(f"cannot create {root}: {err.strerror}", hint="check --data-root") from None
    try:
        if (root / INFO_FILE).is_file() and not force:  # another prepare finished while we waited
            return open_prepared(spec.name, data_root)
        return _build(spec, reader, source, root, on_event)
    finally:
        lock.__exit__(None, None, None)
        # A failed first prepare leaves nothing behind, not even its lock.
        if [p.name for p in root.iterdir()] == [PREPARE_LOCK]:
            (root / PREPARE_LOCK).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                root.rmdir()


def _build(
    spec: DatasetSpec, reader: Source, source: Path | None, root: Path, on_event: EventHandler | None
) -> PreparedDataset:
    """Build the dataset in a staging folder and swap it into place (the caller holds the prepare lock)."""
    try:
        for stale in root.glob(f"{STAGING_PREFIX}*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a run that was killed
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=root))
    except OSError as err:
        raise EnvironmentFailure(f"cannot create {root}: {err.strerror}", hint="check --data-root") from None
    try:
        inputs = _acquire(spec, reader, source, root / RAW_DIR, on_event)
        emit(on_event, Event("log", spec.name, message=f"building {spec.name} from {inputs.describe()}"))
        frame = _apply_protocol(spec, reader.build(spec, inputs, staging, on_event))
        spec = reader.fit_spec(spec, frame)
        disjoint = _check_splits(spec, frame)
        index_bytes = frame.to_csv(index=False, float_format="%.6g").encode("utf-8")
        (staging / INDEX_FILE).write_bytes(index_bytes)
        image_size = _array_image_size(staging)
        _swap_into_place(staging, root)
        info = write_info(
            root, spec, frame, index_bytes, disjoint=disjoint, image_size=image_size, source_info=reader.build_info()
        )
    except OSError as err:
        # Only the disk's failures are translated here; others (a user's file gone) keep their own reading.
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise from_os_error(
                err,
                doing=f"preparing {spec.name}",
                inside=root,
                hint="free some space or use --data-root on a larger disk, then rerun",
            ) from None
        if isinstance(err, PermissionError):
            raise from_os_error(err, hint="choose a writable --data-root") from None
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return PreparedDataset(name=spec.name, root=root, info=info)


def _acquire(
    spec: DatasetSpec, reader: Source, source: Path | None, raw_dir: Path, on_event: EventHandler | None
) -> SourceInputs:
    if source is not None:
        return reader.gather(spec, source)
    recorded = reader.default_inputs(spec)
    if recorded is not None:
        return recorded
    if not reader.needs_files:
        return SourceInputs(origin="generated")
    manual = [f.name for f in spec.files if not f.urls]
    if manual or not spec.files:
        what = f"no public URL for {', '.join(manual)}" if manual else "the catalog lists no download"
        raise MissingInputError(
            f"{spec.name} cannot be downloaded automatically: {what}",
            hint=f"download it by hand (see docs/datasets.md#{spec.name}) and run "
            f"`dmlbench prepare {spec.name} --from PATH`",
        )
    files = {f.name: download_file(f, raw_dir, on_event=on_event) for f in spec.files}
    return SourceInputs(files=files, origin=f"{raw_dir}")


def _apply_protocol(spec: DatasetSpec, frame: pd.DataFrame) -> pd.DataFrame:
    if spec.protocol == "class-split" and spec.split_rule != "source":
        assert spec.train_classes is not None and spec.test_classes is not None
        labels = frame["label"]
        in_train = labels.between(*spec.train_classes)
        in_test = labels.between(*spec.test_classes)
        if spec.split_rule == "alternate":  # interleaved ids: each split takes the parity its range starts on
            in_train &= labels % 2 == spec.train_classes[0] % 2
            in_test &= labels % 2 == spec.test_classes[0] % 2
        outside = ~(in_train | in_test)
        if outside.any():
            raise ChecksumError(
                f"{spec.name}: {int(outside.sum())} image(s) have labels outside the class ranges "
                f"{list(spec.train_classes)} / {list(spec.test_classes)}, e.g. {int(labels[outside].iloc[0])}",
                hint="the files are not the dataset the catalog describes",
            )
        frame = frame.assign(split=np.where(in_train, "train", "test"))
    elif "split" not in frame.columns:
        raise ChecksumError(f"{spec.name}: the source gave no split column", hint="this is a bug in the source")
    extra = [*BOX_COLUMNS, SEQUENCE_COLUMN]
    columns = ["path", "label", "split"] + [c for c in extra if c in frame.columns]
    return frame[columns].reset_index(drop=True)


def _check_splits(spec: DatasetSpec, frame: pd.DataFrame) -> bool:
    """Check expected counts; return whether training classes are disjoint from evaluation classes."""
    unknown = sorted(set(frame["split"]) - set(spec.splits))
    if unknown:
        raise ChecksumError(f"{spec.name}: unexpected split {unknown[0]!r}", hint=f"expected {', '.join(spec.splits)}")
    for split in spec.splits:
        rows = frame[frame["split"] == split]
        for what, got, want in (
            ("images", len(rows), spec.expect_images.get(split)),
            ("classes", rows["label"].nunique(), spec.expect_classes.get(split)),
        ):
            if want is not None and got != want:
                raise ChecksumError(
                    f"{spec.name}: the {split} split has {got:,} {what}, the catalog expects {want:,}",
                    hint="the files are incomplete or not the version the catalog describes",
                )
    train = set(frame.loc[frame["split"] == "train", "label"])
    held_out = set(frame.loc[frame["split"] != "train", "label"])
    disjoint = not (train & held_out)
    if not disjoint:
        log.warning("%s: %d classes appear in train and in evaluation splits", spec.name, len(train & held_out))
    return disjoint


def _array_image_size(staging: Path) -> list[int] | None:
    if not (staging / ARRAY_FILE).is_file():
        return None
    shape = load_npy(staging / ARRAY_FILE, mmap_mode="r").shape
    return [int(shape[1]), int(shape[2])]


def _swap_into_place(staging: Path, root: Path) -> None:
    """Drop `prepared.json` first (the dataset is 'not prepared' from here on), then move the new payload in."""
    (root / INFO_FILE).unlink(missing_ok=True)
    remove_caches(root)  # decoded from the images being replaced
    for item in _PAYLOAD:
        old = root / item
        if old.is_dir():
            shutil.rmtree(old)
        else:
            old.unlink(missing_ok=True)
        if (staging / item).exists():
            (staging / item).replace(old)


def open_or_prepare(name: str, places: Places, *, on_event: EventHandler | None = None) -> PreparedDataset:
    """The prepared dataset `name`; one with nothing to download (digits, synthetic) is prepared here.

    A dataset that needs files keeps `open_prepared`'s MissingInputError naming `dmlbench prepare NAME`.
    The name is checked first: it may come from an untrusted run folder and becomes a path.
    """
    check_name(name, "dataset")
    try:
        return open_prepared(name, data_root=places.data_root)
    except MissingInputError:
        spec = get_spec(name, places)
        if SOURCES.get(spec.source).needs_files:
            raise
    emit(on_event, Event("log", "prepare", message=f"preparing {name} in {places.data_root}"))
    return prepare(name, places, on_event=on_event)
