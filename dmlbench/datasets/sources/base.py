"""The `Source` interface: turn one raw dataset format into images plus an index frame."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dmlbench.datasets.download import check_magic, verify_file
from dmlbench.datasets.extract import ExtractResult, MemberMap, copy_tree, extract_archive, refuse_outside_link
from dmlbench.datasets.spec import DatasetSpec
from dmlbench.errors import ChecksumError, ConfigError, MissingInputError, UsageError
from dmlbench.events import EventHandler

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class SourceInputs:
    """The raw material of one prepare: verified catalog files and/or a folder given with --from."""

    files: dict[str, Path] = field(default_factory=dict)
    folder: Path | None = None
    archive: Path | None = None  # an archive given with --from that is not one of the catalog's files
    origin: str = "download"

    def describe(self) -> str:
        """Where the inputs came from, for messages."""
        return self.origin


class Source(ABC):
    """One raw format. `build` writes images (or images.npy) into `staging` and returns the index frame.

    The frame has `path` (relative to the prepared folder), `label` (the dataset's own ids) and, for
    protocols other than class-split, `split`; optionally `x1, y1, x2, y2` boxes.
    """

    #: False for generated/bundled datasets: prepare never downloads and rejects --from.
    needs_files: bool = True

    def gather(self, spec: DatasetSpec, path: Path) -> SourceInputs:
        """Interpret `--from PATH`: a file of the catalog, or a folder holding files or extracted data."""
        if not path.exists():
            raise MissingInputError(f"--from {path} does not exist", hint="pass the downloaded file or its folder")
        inputs = SourceInputs(origin=f"--from {path}")
        if path.is_file():
            by_name = [f for f in spec.files if f.name == path.name]
            matched = by_name or (list(spec.files) if len(spec.files) == 1 else [])
            if not matched:
                names = ", ".join(f.name for f in spec.files)
                raise UsageError(
                    f"--from {path} is not one of {spec.name}'s files ({names})",
                    hint=f"pass one of those files or the folder that holds them (see docs/datasets.md#{spec.name})",
                )
            inputs.files[matched[0].name] = path
            for other in spec.files:
                beside = path.parent / other.name
                if other.name not in inputs.files and beside.is_file():
                    inputs.files[other.name] = beside
        else:
            inputs.folder = path
            inside = path.resolve()
            for spec_file in spec.files:
                for candidate in (path / spec_file.name, *path.glob(f"*/{spec_file.name}")):
                    if candidate.is_symlink():
                        refuse_outside_link(candidate, inside)
                    if candidate.is_file():
                        inputs.files[spec_file.name] = candidate
                        break
        for spec_file in spec.files:
            found = inputs.files.get(spec_file.name)
            if found is None:
                continue
            if spec_file.content_sha256 is not None:
                check_magic(spec_file, found, str(found))  # content is verified when it is decoded
            else:
                verify_file(spec_file, found, f"--from {found}")
        return inputs

    @classmethod
    def check_params(cls, spec: DatasetSpec) -> None:
        """Refuse `spec.params` this source cannot take: where the catalog loads, long before a build or a run.

        A source that reads no params refuses any (a silently ignored setting is a wrong dataset); one that
        reads some overrides this and bounds each value to what its generator accepts.
        """
        if spec.params:
            raise ConfigError(
                f"[{spec.name}] params: source {spec.source!r} takes no params, got {', '.join(sorted(spec.params))}",
                hint="remove the params table of this dataset (see docs/datasets.md)",
            )

    @abstractmethod
    def build(
        self, spec: DatasetSpec, inputs: SourceInputs, staging: Path, on_event: EventHandler | None
    ) -> pd.DataFrame:
        """Write the dataset's images into `staging` and return its index frame."""

    def default_inputs(self, spec: DatasetSpec) -> SourceInputs | None:
        """Inputs known from the spec itself (the user's folder or CSV recorded in it), else None."""
        return None

    def fit_spec(self, spec: DatasetSpec, frame: pd.DataFrame) -> DatasetSpec:
        """The spec prepared.json records, once `build` has seen the data (user datasets fit their
        backbone, input size and P x K to it); catalog datasets keep theirs."""
        return spec

    def build_info(self) -> dict[str, Any]:
        """Facts about the last `build` that prepared.json records under `source_info` (e.g. the fonts and
        generator version of a generated dataset); empty for most sources."""
        return {}

    def stale_reason(self, spec: DatasetSpec, info: dict[str, Any]) -> str | None:
        """Why an already prepared copy (its prepared.json `info`) differs from what this machine would
        build now, or None; `prepare` reports it instead of silently reusing the copy."""
        return None


def check_param_keys(spec: DatasetSpec, known: tuple[str, ...]) -> None:
    """Refuse a params key the source does not read (a typo would otherwise silently build another dataset)."""
    from dmlbench.registry import did_you_mean

    for key in sorted(set(spec.params) - set(known)):
        raise ConfigError(
            f"[{spec.name}] params.{key}: source {spec.source!r} has no such param",
            hint=f"{did_you_mean(key, list(known))}params of {spec.source}: {', '.join(known)}",
        )


def int_param(spec: DatasetSpec, key: str, *, low: int, high: int, default: int | None = None) -> int:
    """`spec.params[key]` as an integer in [low, high]; anything else is one ConfigError naming the table and key."""
    value = spec.params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(
            f"[{spec.name}] params.{key} must be an integer in {low}..{high}, got {value!r}",
            hint=f"see [{spec.source}] in datasets.toml",
        )
    return value


def wrong_input(spec: DatasetSpec, inputs: SourceInputs, expected: str) -> UsageError:
    """The error for `--from` material that does not belong to this dataset."""
    return UsageError(
        f"{inputs.describe()} does not hold {spec.title.split(' (')[0]} files: expected {expected}",
        hint=f"check the path; docs/datasets.md lists the layouts `dmlbench prepare {spec.name} --from` accepts",
    )


def extract_or_copy(
    spec: DatasetSpec,
    inputs: SourceInputs,
    staging: Path,
    member_map: MemberMap,
    *,
    archive_name: str,
    root_name: str,
    marker: str,
    expected: str,
    on_event: EventHandler | None,
) -> tuple[ExtractResult, str]:
    """Extract the catalog archive, else copy an extracted folder (`root_name/` or the folder itself, whichever
    holds `marker`); return what was written and where it came from (for messages)."""
    archive = inputs.files.get(archive_name)
    if archive is not None:
        return extract_archive(archive, staging, member_map, on_event=on_event), archive.name
    if inputs.folder is not None:
        root = next((p for p in (inputs.folder / root_name, inputs.folder) if (p / marker).is_file()), None)
        if root is not None:
            return copy_tree(root, staging, member_map, on_event=on_event, task=f"copy {root.name}"), str(root)
    raise wrong_input(spec, inputs, expected)


def check_listed(paths: list[str], result: ExtractResult, spec: DatasetSpec, origin: str) -> None:
    """Every image the metadata lists must have been written and must look like an image."""
    missing = [p for p in paths if p not in result.written]
    if missing:
        raise ChecksumError(
            f"{spec.name}: the metadata lists {len(missing):,} image(s) missing from {origin}, e.g. {missing[0]}",
            hint="the archive or folder is incomplete; get a complete copy and rerun",
        )
    bad = sorted(set(paths) & result.bad_images)
    if bad:
        raise ChecksumError(
            f"{spec.name}: {len(bad):,} corrupt image(s) in {origin} (not JPEG/PNG data), e.g. {bad[0]}",
            hint="the archive or folder is damaged; get a fresh copy and rerun",
        )
