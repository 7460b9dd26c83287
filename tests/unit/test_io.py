"""Atomic writes leave either the old file or the new one, never half of one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dmlbench.utils.io import atomic_path, read_json, sha256_file, write_json_atomic


def test_json_is_versioned_and_round_trips(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "m.json"
    write_json_atomic(target, {"a": 1})
    assert read_json(target) == {"schema_version": 1, "a": 1}


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    target.write_text('{"old": true}')
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_read_json_names_the_file_on_corruption(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        read_json(bad)


def test_sha256_matches_hashlib(tmp_path: Path) -> None:
    import hashlib

    blob = tmp_path / "b"
    blob.write_bytes(b"x" * 3_000_000)
    assert sha256_file(blob) == hashlib.sha256(b"x" * 3_000_000).hexdigest()


def test_atomic_files_get_the_usual_permissions(tmp_path: Path) -> None:
    import os

    target = tmp_path / "shared.json"
    write_json_atomic(target, {"a": 1})
    mask = os.umask(0o022)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


def test_in_place_writers_refuse_symbolic_and_hard_links(tmp_path: Path) -> None:
    import os

    from dmlbench.errors import ConfigError
    from dmlbench.utils.io import append_line
    from dmlbench.utils.locks import exclusive_lock, lock_holder

    precious = tmp_path / "thesis.tex"
    precious.write_text("years of work\n")
    symbolic, hard, fifo = tmp_path / "sym.log", tmp_path / "hard.log", tmp_path / "fifo.log"
    symbolic.symlink_to(precious)
    os.link(precious, hard)
    os.mkfifo(fifo)
    dangling = tmp_path / "dangling.log"
    dangling.symlink_to(tmp_path / "created-through-the-link")
    for path, what in ((symbolic, "symbolic link"), (hard, "hard link"), (fifo, "not a regular file")):
        with pytest.raises(ConfigError, match=what) as info:
            append_line(path, "appended")
        assert str(path) in info.value.message and info.value.hint
        with pytest.raises(ConfigError, match=what), exclusive_lock(path, holder="test", what="folder"):
            pass
    with pytest.raises(ConfigError, match="symbolic link"):
        append_line(dangling, "appended")
    assert not (tmp_path / "created-through-the-link").exists()
    assert precious.read_text() == "years of work\n"
    with exclusive_lock(tmp_path / "real.lock", holder="test", what="folder"):
        assert lock_holder(symbolic) is None  # never reads another file's first line as a holder
        assert lock_holder(tmp_path / "real.lock") is not None
