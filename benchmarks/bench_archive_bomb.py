"""Decompression bombs through the real `prepare --from` path: refused, with bounded peak memory.

Builds two archives whose one member inflates about 1000x (by default a 1 GiB member of zeros in about
1 MiB): a zip in the SOP layout (the member where an image belongs) and a gzip'd tar in the CUB layout.
Each is declared in a user catalog (a copy of the sop / cub200 entry naming the archive, no checksums,
as a user's own catalog may be) and prepared with `dmlbench prepare NAME --catalog CAT --from ARCHIVE`
in a fresh process. Printed per archive: its size, what the member declares, the exit code, the error
line, the process's peak resident memory (from wait4) and what was left in the data root. The first row
is the interpreter with dmlbench's dataset code imported, the floor every prepare pays.

    python benchmarks/bench_archive_bomb.py [--inflate-mib 1024] [--workdir DIR] [--code CHECKOUT]

`--code` runs the prepares against another checkout (PYTHONPATH), e.g. one from before the bounds.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tomli_w
from markdown_table import print_table

MIB = 1 << 20


def zeros(size: int) -> Iterator[bytes]:
    """`size` zero bytes, a MiB at a time (the bomb is never whole in this process either)."""
    for start in range(0, size, MIB):
        yield bytes(min(MIB, size - start))


class ZeroStream(io.RawIOBase):
    """`size` zero bytes as a readable stream, for tarfile.addfile."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        count = min(len(view), self.left)
        view[:count] = bytes(count)
        self.left -= count
        return count


def build_zip(path: Path, size: int) -> str:
    """Stanford_Online_Products.zip: the three lists naming one image, and that image a bomb."""
    member = "Stanford_Online_Products/bicycle_final/111085122871_0.JPG"
    header = "image_id class_id super_class_id path\n"
    line = f"1 1 1 {member.split('/', 1)[1]}\n"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name in ("Ebay_train.txt", "Ebay_test.txt", "Ebay_info.txt"):
            zf.writestr(f"Stanford_Online_Products/{name}", header + line)
        with zf.open(member, "w", force_zip64=True) as handle:
            for chunk in zeros(size):
                handle.write(chunk)
    return member


def build_tgz(path: Path, size: int) -> str:
    """CUB_200_2011.tgz whose first image is a bomb (the metadata behind it is never reached)."""
    member = "CUB_200_2011/images/001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg"
    with tarfile.open(path, "w:gz", compresslevel=9) as tar:
        info = tarfile.TarInfo(member)
        info.size = size
        tar.addfile(info, io.BufferedReader(ZeroStream(size), buffer_size=MIB))
        listing = tarfile.TarInfo("CUB_200_2011/images.txt")
        text = f"1 {member.split('/', 2)[2]}\n".encode()
        listing.size = len(text)
        tar.addfile(listing, io.BytesIO(text))
    return member


def write_catalog(path: Path, entries: dict[str, tuple[str, str, str]]) -> None:
    """name -> (catalog entry it copies, archive file name, format): no size, no checksums."""
    from dmlbench.datasets.catalog import get_spec, spec_to_table
    from dmlbench.datasets.spec import FileSpec

    tables = {}
    for name, (base, file_name, fmt) in entries.items():
        spec = get_spec(base).model_copy(
            update={"name": name, "files": (FileSpec(name=file_name, format=fmt),), "expect_images": {}}  # type: ignore[arg-type]
        )
        tables[name] = spec_to_table(spec)
    path.write_text(tomli_w.dumps(tables))


def measure(argv: list[str], env: dict[str, str]) -> tuple[int, float, float, str]:
    """(exit code, peak RSS in MiB, seconds, last stderr line) of one fresh process."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    lines = [line for line in stderr.splitlines() if line.strip()]
    message = next((line for line in lines if line.startswith("error:")), lines[-1] if lines else "")
    return process.returncode, usage.ru_maxrss / 1024, seconds, message


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink()) if root.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inflate-mib", type=int, default=1024, help="what the bomb member inflates to")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--code", type=Path, default=None, help="checkout to run the prepares against")
    args = parser.parse_args()
    size = args.inflate_mib * MIB
    env = {**os.environ}
    if args.code is not None:
        env["PYTHONPATH"] = str(args.code.resolve())
    with tempfile.TemporaryDirectory(prefix="dmlbench-bomb-", dir=args.workdir) as tmp:
        work = Path(tmp)
        (work / "zip").mkdir()
        (work / "tgz").mkdir()
        archives = {
            "bomb-sop": (work / "zip" / "Stanford_Online_Products.zip", build_zip, "sop", "zip"),
            "bomb-cub": (work / "tgz" / "CUB_200_2011.tgz", build_tgz, "cub200", "tgz"),
        }
        members = {name: build(path, size) for name, (path, build, _, _) in archives.items()}
        catalog = work / "catalog.toml"
        write_catalog(catalog, {name: (base, path.name, fmt) for name, (path, _, base, fmt) in archives.items()})
        python = [sys.executable]
        code, peak, seconds, _ = measure([*python, "-c", "import dmlbench.datasets.pipeline"], env)
        rows: list[dict[str, Any]] = [
            {
                "run": "import only",
                "archive MiB": 0.0,
                "member inflates to MiB": 0.0,
                "ratio": "-",
                "exit": code,
                "peak RSS MiB": peak,
                "seconds": seconds,
                "left in data root MiB": 0.0,
                "message": "",
            }
        ]
        for name, (path, _, _, _) in archives.items():
            data_root = work / f"data-{name}"
            argv = [*python, "-m", "dmlbench", "prepare", name, "--catalog", str(catalog)]
            argv += ["--from", str(path), "--data-root", str(data_root)]
            code, peak, seconds, message = measure(argv, env)
            rows.append(
                {
                    "run": f"prepare --from {path.name}",
                    "archive MiB": path.stat().st_size / MIB,
                    "member inflates to MiB": size / MIB,
                    "ratio": f"{size / path.stat().st_size:.0f}x",
                    "exit": code,
                    "peak RSS MiB": peak,
                    "seconds": seconds,
                    "left in data root MiB": tree_bytes(data_root) / MIB,
                    "message": message.replace(str(work), "WORK").replace("|", "/")[:260],
                }
            )
        print(f"bomb members: {', '.join(members.values())}\n")
        print_table(rows)


if __name__ == "__main__":
    main()
