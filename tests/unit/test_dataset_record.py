"""DatasetRecord.from_prepared: the one record of a prepared dataset that trained, baseline and ensemble runs store."""

from __future__ import annotations

from pathlib import Path

from dmlbench.datasets.prepared import PreparedDataset
from dmlbench.rundir import DatasetRecord


def test_the_record_carries_name_fingerprint_protocol_and_splits(tmp_path: Path) -> None:
    splits = {"train": {"images": 10, "classes": 2}, "test": {"images": 6, "classes": 2}}
    info = {"index_sha256": "ab" * 32, "protocol": "class-disjoint", "splits": splits, "train_test_disjoint": True}
    record = DatasetRecord.from_prepared(PreparedDataset(name="digits", root=tmp_path, info=info))
    assert record == DatasetRecord(
        name="digits", fingerprint="ab" * 32, protocol="class-disjoint", splits=splits, train_test_disjoint=True
    )


def test_an_info_without_optional_facts_records_none(tmp_path: Path) -> None:
    record = DatasetRecord.from_prepared(PreparedDataset(name="mine", root=tmp_path, info={"index_sha256": "0"}))
    assert (record.protocol, record.splits, record.train_test_disjoint) == (None, None, None)
