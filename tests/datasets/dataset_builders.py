"""Build tiny dataset files in the real on-disk formats, from the real metadata in the shared fixtures.

Images are one 4x4 JPEG (or a generated PNG) repeated: the pipeline never decodes them while
preparing, and tests that decode them only need a valid image.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import tarfile
import threading
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import tomli_w

from dmlbench.datasets.catalog import get_spec, spec_to_table
from dmlbench.datasets.prepared import INDEX_FILE, INFO_FILE
from dmlbench.datasets.sources.sop import CATEGORIES
from dmlbench.datasets.spec import DatasetSpec, FileSpec

REAL = Path(__file__).parent / "real_metadata"  # copied from ../shared/fixtures/real_metadata (see README.md there)
CUB_META = REAL / "CUB_200_2011"
CARS_META = REAL / "Cars196"
CUB_FILES = ("images.txt", "image_class_labels.txt", "classes.txt", "train_test_split.txt", "bounding_boxes.txt")


@cache
def jpeg_bytes(size: int = 4) -> bytes:
    """A valid size x size RGB JPEG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (200, 30, 60)).save(buffer, format="JPEG", quality=50)
    return buffer.getvalue()


CORRUPT_IMAGE = b"this is not an image at all\n" * 4


@dataclass
class Built:
    """A built file and its checksums."""

    path: Path
    size: int
    md5: str
    sha256: str

    @classmethod
    def of(cls, path: Path) -> Built:
        data = path.read_bytes()
        return cls(path, len(data), hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest())

    def file_spec(self, name: str, fmt: str, urls: Iterable[str] = ()) -> FileSpec:
        return FileSpec(name=name, format=fmt, urls=tuple(urls), size=self.size, md5=self.md5, sha256=self.sha256)  # type: ignore[arg-type]


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 1_300_000_000
    tar.addfile(info, io.BytesIO(data))


def cub_rows(classes: Iterable[int] | None = None) -> list[int]:
    """0-based row numbers of the real CUB metadata, optionally only for some classes."""
    labels = [int(line.split()[1]) for line in (CUB_META / "image_class_labels.txt").read_text().splitlines()]
    wanted = set(classes) if classes is not None else None
    return [i for i, label in enumerate(labels) if wanted is None or label in wanted]


def build_cub_tgz(
    dest: Path,
    *,
    rows: list[int] | None = None,
    drop: Iterable[int] = (),
    corrupt: Iterable[int] = (),
    extra: Iterable[tuple[str, bytes]] = (),
) -> Built:
    """CUB_200_2011.tgz in the official layout: metadata files (real lines) + one tiny JPEG per image.

    `rows` keeps only those metadata rows; `drop` leaves those images out of the archive (metadata still
    lists them); `corrupt` stores garbage instead of JPEG data; `extra` adds raw members (e.g. '../evil').
    """
    meta = {name: (CUB_META / name).read_text().splitlines(keepends=True) for name in CUB_FILES}
    keep = rows if rows is not None else list(range(len(meta["images.txt"])))
    dropped, bad = set(drop), set(corrupt)
    with tarfile.open(dest, "w:gz", compresslevel=1) as tar:
        for name in CUB_FILES:
            lines = meta[name] if name == "classes.txt" else [meta[name][i] for i in keep]
            _add(tar, f"CUB_200_2011/{name}", "".join(lines).encode())
        _add(tar, "attributes.txt", b"1 has_bill_shape::curved\n")  # top-level file of the real archive
        for name, data in extra:
            _add(tar, name, data)
        for i in keep:
            if i in dropped:
                continue
            rel = meta["images.txt"][i].split()[1]
            _add(tar, f"CUB_200_2011/images/{rel}", CORRUPT_IMAGE if i in bad else jpeg_bytes())
    return Built.of(dest)


def cars_rows() -> list[list[str]]:
    """The real cars_annos.csv rows (first 7 columns = the .mat fields in .mat order)."""
    rows = []
    for line in (CARS_META / "cars_annos.csv").read_text().splitlines():
        fields = line.split(",")
        rows.append([fields[0].strip("'"), *fields[1:7]])
    return rows


def build_cars_annos_mat(dest: Path, rows: list[list[str]]) -> Built:
    """REBUILT by us (no original cars_annos.mat is available): the `annotations` struct from cars_annos.csv."""
    from scipy.io import savemat

    dtype = [(f, "O") for f in ("relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test")]
    ann = np.zeros((1, len(rows)), dtype=dtype)
    for j, (rel, x1, y1, x2, y2, cls, test) in enumerate(rows):
        ann[0, j] = (rel, int(x1), int(y1), int(x2), int(y2), int(cls), int(test == "TRUE"))
    names = np.array([f"class {i}" for i in range(1, 197)], dtype=object).reshape(1, -1)
    savemat(dest, {"annotations": ann, "class_names": names})
    return Built.of(dest)


def build_car_ims_tgz(dest: Path, rows: list[list[str]], *, drop: Iterable[int] = ()) -> Built:
    """car_ims.tgz with car_ims/NNNNNN.jpg for every row."""
    dropped = set(drop)
    with tarfile.open(dest, "w:gz", compresslevel=1) as tar:
        for i, row in enumerate(rows):
            if i not in dropped:
                _add(tar, row[0], jpeg_bytes())
    return Built.of(dest)


def build_cars_kaggle(dest: Path) -> Path:
    """The Kaggle by-classes-folder layout: anno_*.csv (real) + car_data/car_data/{train,test}/<class>/<fname>."""
    dest.mkdir(parents=True)
    for split in ("train", "test"):
        text = (CARS_META / "kaggle_stanford-car-dataset-by-classes-folder" / f"anno_{split}.csv").read_text()
        (dest / f"anno_{split}.csv").write_text(text)
        made: set[Path] = set()
        for line in text.splitlines():
            fname, *_, cls = line.split(",")
            folder = dest / "car_data" / "car_data" / split / f"Model {int(cls):03d}"
            if folder not in made:
                folder.mkdir(parents=True)
                made.add(folder)
            (folder / fname).write_bytes(jpeg_bytes())
    return dest


@dataclass
class SopBuilt:
    built: Built
    train_images: int
    test_images: int
    train_classes: int
    test_classes: int


def sop_layout(train_classes: int, test_classes: int, seed: int = 0) -> list[tuple[int, int, int, str, str]]:
    """Rows (image_id, class_id, super_class_id, path, split) in the real Ebay_*.txt format, 2-12 per class."""
    rng = np.random.default_rng(seed)
    rows = []
    image_id = 0
    for class_id in range(1, train_classes + test_classes + 1):
        split = "train" if class_id <= train_classes else "test"
        super_id = (class_id - 1) % 12 + 1
        item = 111085122871 + class_id * 7
        for n in range(int(rng.integers(2, 13))):
            image_id += 1
            rows.append((image_id, class_id, super_id, f"{CATEGORIES[super_id - 1]}_final/{item}_{n}.JPG", split))
    return rows


def write_sop_lists(rows: list[tuple[int, int, int, str, str]]) -> dict[str, bytes]:
    """Ebay_train.txt, Ebay_test.txt, Ebay_info.txt (header + space-separated lines)."""
    header = "image_id class_id super_class_id path\n"
    out = {}
    for name, split in (("Ebay_train.txt", "train"), ("Ebay_test.txt", "test"), ("Ebay_info.txt", None)):
        body = "".join(f"{i} {c} {s} {p}\n" for i, c, s, p, sp in rows if split is None or sp == split)
        out[name] = (header + body).encode()
    return out


def build_sop_zip(
    dest: Path,
    rows: list[tuple[int, int, int, str, str]],
    *,
    extra: Iterable[tuple[str, bytes]] = (),
    compression: int = zipfile.ZIP_STORED,
) -> SopBuilt:
    """Stanford_Online_Products.zip in the real layout."""
    with zipfile.ZipFile(dest, "w", compression=compression) as zf:
        for name, data in write_sop_lists(rows).items():
            zf.writestr(f"Stanford_Online_Products/{name}", data)
        for name, data in extra:
            zf.writestr(name, data)
        image = jpeg_bytes()
        for _, _, _, path, _ in rows:
            zf.writestr(f"Stanford_Online_Products/{path}", image)
    train = [r for r in rows if r[4] == "train"]
    test = [r for r in rows if r[4] == "test"]
    return SopBuilt(Built.of(dest), len(train), len(test), len({r[1] for r in train}), len({r[1] for r in test}))


def idx_bytes(array: np.ndarray) -> bytes:
    """An idx file of unsigned bytes (magic 0x08, ndim)."""
    header = b"\x00\x00\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def build_fashion_files(dest: Path, n_train: int = 60, n_test: int = 20) -> dict[str, tuple[Built, bytes]]:
    """Four gzip'd idx files of a tiny Fashion-MNIST look-alike: name -> (built .gz, decompressed content)."""
    dest.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    parts = {
        "train-images-idx3-ubyte": rng.integers(0, 256, size=(n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    out = {}
    for name, array in parts.items():
        content = idx_bytes(np.asarray(array))
        path = dest / f"{name}.gz"
        path.write_bytes(gzip.compress(content, mtime=0))
        out[f"{name}.gz"] = (Built.of(path), content)
    return out


def spec_override(base: str, **updates: object) -> DatasetSpec:
    """The catalog's `base` entry with fields replaced (validated again)."""
    table = get_spec(base).model_dump()
    table.update(updates)
    return DatasetSpec(**table)


def write_catalog(path: Path, spec: DatasetSpec) -> Path:
    """A user catalog file holding `spec` as one table."""
    path.write_text(tomli_w.dumps({spec.name: spec_to_table(spec)}))
    return path


# --------------------------------------------------------------------------- a real HTTP server


@dataclass
class Route:
    """What the server sends for one path."""

    data: bytes
    content_type: str = "application/octet-stream"
    status: int = 200
    honour_range: bool = True
    cut_after: int | None = None  # close the connection after this many body bytes (Content-Length stays full)


@dataclass
class FileServer:
    """A threaded http.server on 127.0.0.1 serving `routes`; `requests` logs (path, Range header)."""

    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def serve(self, path: str, data: bytes, **kwargs: object) -> str:
        self.routes[path] = Route(data, **kwargs)  # type: ignore[arg-type]
        return self.url(path)


def start_server() -> tuple[FileServer, ThreadingHTTPServer]:
    state = FileServer()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # silence stderr
            return

        def do_GET(self) -> None:
            range_header = self.headers.get("Range")
            state.requests.append((self.path, range_header))
            route = state.routes.get(self.path)
            if route is None:
                self.send_error(404, "Not Found")
                return
            if route.status != 200:
                self.send_response(route.status)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", str(len(route.data)))
                self.end_headers()
                self.wfile.write(route.data)
                return
            data, start = route.data, 0
            if range_header and route.honour_range:
                start = int(range_header.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Type", route.content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if route.cut_after is not None and route.cut_after < len(body):
                self.wfile.write(body[: route.cut_after])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return state, server


def closed_port() -> int:
    """A local port with nothing listening (connection refused)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_nothing_left(data_root: Path, name: str) -> None:
    """No prepared.json, no index, no images, no staging folder: the dataset is simply not there."""
    root = data_root / name
    if not root.exists():
        return
    leftovers = sorted(p.name for p in root.iterdir() if p.name not in ("raw", ".prepare.lock"))
    assert leftovers == [], f"half-prepared dataset left behind: {leftovers}"
    assert not (root / INFO_FILE).exists()
    assert not (root / INDEX_FILE).exists()
    raw = root / "raw"
    if raw.exists():
        # only verified downloads or resumable .part files may stay
        assert all(p.is_file() for p in raw.iterdir())
