"""The idx format of MNIST-style datasets (Fashion-MNIST): four gzip'd idx files."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pandas as pd

from dmlbench.datasets.download import verify_content
from dmlbench.datasets.sources._arrays import write_array_dataset
from dmlbench.datasets.sources.base import Source, SourceInputs, wrong_input
from dmlbench.datasets.spec import DatasetSpec
from dmlbench.errors import ChecksumError
from dmlbench.events import Event, EventHandler, emit

_PARTS = (("train-images", "train-labels"), ("t10k-images", "t10k-labels"))


def parse_idx(data: bytes, name: str) -> np.ndarray:
    """Decode an idx file (magic 0x0801 labels, 0x0803 images, unsigned bytes)."""
    if len(data) < 8 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ChecksumError(f"{name} is not an idx file of unsigned bytes", hint="check the file")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ChecksumError(f"{name} holds {body.size} values, its header says {dims}", hint="the file is truncated")
    return body.reshape(dims)


class IdxSource(Source):
    """Train images+labels then t10k images+labels, concatenated in that order (70,000 rows)."""

    def gather(self, spec: DatasetSpec, path: Path) -> SourceInputs:
        """Accept the .gz files or their decompressed versions (same name without .gz)."""
        inputs = super().gather(spec, path)
        if path.is_dir():
            for spec_file in spec.files:
                plain = path / spec_file.name.removesuffix(".gz")
                if spec_file.name not in inputs.files and plain.is_file():
                    inputs.files[spec_file.name] = plain
        return inputs

    def build(
        self, spec: DatasetSpec, inputs: SourceInputs, staging: Path, on_event: EventHandler | None
    ) -> pd.DataFrame:
        """Verify each file's decompressed content against the catalog, decode, write images.npy."""
        missing = [f.name for f in spec.files if f.name not in inputs.files]
        if missing:
            raise wrong_input(
                spec, inputs, f"the idx files {', '.join(f.name for f in spec.files)} (missing {missing[0]})"
            )
        arrays: dict[str, np.ndarray] = {}
        for spec_file in spec.files:
            emit(on_event, Event("log", spec.name, message=f"verifying {spec_file.name}"))
            data = verify_content(spec_file, inputs.files[spec_file.name], inputs.describe())
            key = spec_file.name.split("-idx")[0]
            arrays[key] = parse_idx(data, spec_file.name)
        images, labels = [], []
        for image_key, label_key in _PARTS:
            if image_key not in arrays or label_key not in arrays:
                raise wrong_input(spec, inputs, f"{image_key} and {label_key} idx files")
            if len(arrays[image_key]) != len(arrays[label_key]):
                raise ChecksumError(
                    f"{image_key} and {label_key} differ in length", hint="the files do not belong together"
                )
            images.append(arrays[image_key])
            labels.append(arrays[label_key])
        return write_array_dataset(staging, np.concatenate(images), np.concatenate(labels).astype(np.int64))
