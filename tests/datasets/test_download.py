"""Downloads against a real HTTP server on 127.0.0.1: Range resume, mirrors, checksums, HTML pages, no network."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from dataset_builders import REAL, FileServer, closed_port

from dmlbench.datasets import download
from dmlbench.datasets.download import download_file, verify_file
from dmlbench.datasets.spec import FileSpec
from dmlbench.errors import ChecksumError, DownloadError
from dmlbench.events import Event

PAYLOAD = b"\x1f\x8b" + bytes(range(256)) * 400  # gzip magic + 102 kB


def _spec(urls: list[str], data: bytes = PAYLOAD, **kw: object) -> FileSpec:
    fields: dict[str, object] = {
        "name": "thing.tgz",
        "format": "tgz",
        "urls": tuple(urls),
        "size": len(data),
        "md5": hashlib.md5(data).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    fields.update(kw)
    return FileSpec(**fields)  # type: ignore[arg-type]


def test_download_reports_bytes_and_verifies(server: FileServer, tmp_path: Path) -> None:
    events: list[Event] = []
    path = download_file(_spec([server.serve("/a.tgz", PAYLOAD)]), tmp_path, on_event=events.append)
    assert path.read_bytes() == PAYLOAD and not (tmp_path / "thing.tgz.part").exists()
    start = next(e for e in events if e.kind == "start")
    assert start.unit == "B" and start.total == len(PAYLOAD)
    assert sum(e.amount for e in events if e.kind == "advance") == len(PAYLOAD)
    # second call: the verified file is reused, no request
    server.requests.clear()
    download_file(_spec([server.url("/a.tgz")]), tmp_path)
    assert server.requests == []


def test_resume_sends_range_and_appends(server: FileServer, tmp_path: Path) -> None:
    (tmp_path / "thing.tgz.part").write_bytes(PAYLOAD[:5000])
    path = download_file(_spec([server.serve("/a.tgz", PAYLOAD)]), tmp_path)
    assert server.requests == [("/a.tgz", "bytes=5000-")]
    assert path.read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_cleanly(server: FileServer, tmp_path: Path) -> None:
    (tmp_path / "thing.tgz.part").write_bytes(b"garbage" * 100)
    path = download_file(_spec([server.serve("/a.tgz", PAYLOAD, honour_range=False)]), tmp_path)
    assert path.read_bytes() == PAYLOAD


def test_mirror_fallback(server: FileServer, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/a.tgz"
    missing = server.url("/missing.tgz")
    good = server.serve("/good.tgz", PAYLOAD)
    path = download_file(_spec([dead, missing, good]), tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert [p for p, _ in server.requests] == ["/missing.tgz", "/good.tgz"]


def test_checksum_mismatch_deletes_the_bad_copy(server: FileServer, tmp_path: Path) -> None:
    url = server.serve("/a.tgz", PAYLOAD)
    spec = _spec([url], md5="0" * 32, sha256=None)
    with pytest.raises(ChecksumError) as info:
        download_file(spec, tmp_path)
    assert "md5 mismatch" in info.value.message and info.value.exit_code == 4
    assert list(tmp_path.iterdir()) == []


def test_wrong_size_is_reported(server: FileServer, tmp_path: Path) -> None:
    url = server.serve("/a.tgz", PAYLOAD[:-10])
    with pytest.raises(ChecksumError, match=f"expected {len(PAYLOAD):,}"):
        download_file(_spec([url]), tmp_path)


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "application/octet-stream"])
def test_html_page_instead_of_archive(server: FileServer, tmp_path: Path, content_type: str) -> None:
    page = (REAL / "Cars196" / "broken_download_example" / "cars_annos.mat").read_bytes()
    url = server.serve("/a.tgz", page, content_type=content_type)
    with pytest.raises(ChecksumError) as info:
        download_file(_spec([url]), tmp_path)
    assert "is an HTML page, not a gzip'd tar archive" in info.value.message
    assert "--from" in (info.value.hint or "")
    assert list(tmp_path.iterdir()) == []


def test_real_broken_cars_annos_is_rejected_by_magic(tmp_path: Path) -> None:
    broken = REAL / "Cars196" / "broken_download_example" / "cars_annos.mat"
    spec = FileSpec(name="cars_annos.mat", format="mat")
    with pytest.raises(ChecksumError, match="HTML page, not a MATLAB 5.0 .mat file"):
        verify_file(spec, broken, str(broken))


def test_no_network(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/a.tgz"
    with pytest.raises(DownloadError) as info:
        download_file(_spec([url]), tmp_path)
    assert "connection refused" in info.value.message and info.value.exit_code == 4
    assert "--from" in (info.value.hint or "")


def test_dropped_connection_keeps_part_and_resumes(server: FileServer, tmp_path: Path) -> None:
    url = server.serve("/a.tgz", PAYLOAD, cut_after=30000)
    with pytest.raises(DownloadError, match="broke off|ended after"):
        download_file(_spec([url]), tmp_path)
    assert (tmp_path / "thing.tgz.part").stat().st_size == 30000
    server.routes["/a.tgz"].cut_after = None
    assert download_file(_spec([url]), tmp_path).read_bytes() == PAYLOAD
    assert server.requests[-1] == ("/a.tgz", "bytes=30000-")


def test_ctrl_c_mid_download_then_resume(server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download, "CHUNK", 4096)
    url = server.serve("/a.tgz", PAYLOAD)
    seen = 0

    def interrupt(event: Event) -> None:
        nonlocal seen
        if event.kind == "advance":
            seen += 1
            if seen == 3:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download_file(_spec([url]), tmp_path, on_event=interrupt)
    kept = (tmp_path / "thing.tgz.part").stat().st_size
    assert 0 < kept < len(PAYLOAD) and not (tmp_path / "thing.tgz").exists()
    assert download_file(_spec([url]), tmp_path).read_bytes() == PAYLOAD
    assert server.requests[-1] == ("/a.tgz", f"bytes={kept}-")


def test_no_url_means_manual_download(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="no download URL"):
        download_file(_spec([]), tmp_path)
