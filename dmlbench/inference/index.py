"""faiss indexes of a gallery of embeddings, saved with what identifies them, and search over them.

An index is a folder, written whole or not at all (built beside the target, then renamed into place):
`index.faiss` (faiss.write_index), `items.npz` (paths, labels when known, class names) and `index.json`
(run, model fingerprint, distance, dimension, size, kind and parameters). Cosine is the inner product of
L2-normalised vectors and euclidean the L2 distance, as in evaluation; scores are "higher is closer"
(cosine similarity, or minus the squared L2 distance), evaluation's convention.

The flat index is exact and searched through evaluation's own ordering (`iter_neighbours`: score, then
gallery position; ties resolved over the whole gallery), so its neighbours are the ones `evaluate` uses.
IVF, IVF-PQ and HNSW are approximate; their parameters trade recall for speed (docs/inference.md).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

import dmlbench
from dmlbench.errors import MissingInputError, UsageError, first_line
from dmlbench.evaluation.files import LABELS_KEY
from dmlbench.evaluation.search import Distance, SearchBackend, iter_neighbours
from dmlbench.inference.embed import CLASS_NAMES_KEY, PATHS_KEY, Embeddings
from dmlbench.utils.io import atomic_path, read_json, write_json_atomic

IndexKind = Literal["flat", "ivf", "ivfpq", "hnsw"]
INDEX_KINDS: tuple[IndexKind, ...] = ("flat", "ivf", "ivfpq", "hnsw")
INDEX_FILE, ITEMS_FILE, META_FILE = "index.faiss", "items.npz", "index.json"
# faiss's own rule of thumb (it warns below it): k-means wants about 39 training points per centroid.
POINTS_PER_CENTROID = 39
PathArg = str | os.PathLike[str]


@dataclass(frozen=True)
class IndexParams:
    """Parameters of the approximate kinds; None means "this kind's default" (or "not used")."""

    nlist: int | None = None  # IVF cells (ivf, ivfpq)
    nprobe: int | None = None  # IVF cells visited per query (ivf, ivfpq); default 8
    m: int | None = None  # PQ sub-quantizers (ivfpq, default 8) or HNSW links per node (hnsw, default 32)
    nbits: int | None = None  # bits per PQ code (ivfpq, default 8)
    ef_search: int | None = None  # HNSW candidate list at search time (default 64)
    ef_construction: int | None = None  # HNSW candidate list while building (default 40)

    def as_dict(self) -> dict[str, int | None]:
        return {
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "m": self.m,
            "nbits": self.nbits,
            "ef_search": self.ef_search,
            "ef_construction": self.ef_construction,
        }


_USED_BY: dict[str, tuple[str, ...]] = {
    "nlist": ("ivf", "ivfpq"),
    "nprobe": ("ivf", "ivfpq"),
    "m": ("ivfpq", "hnsw"),
    "nbits": ("ivfpq",),
    "ef_search": ("hnsw",),
    "ef_construction": ("hnsw",),
}


def check_kind(kind: str) -> IndexKind:
    """`kind` as an index kind, or a usage error listing them."""
    for known in INDEX_KINDS:
        if kind == known:
            return known
    raise UsageError(f"unknown index kind {kind!r}", hint=f"use one of {', '.join(INDEX_KINDS)}")


def check_params(kind: IndexKind, params: IndexParams) -> None:
    """Every given parameter belongs to `kind` and is in range (before any image is embedded)."""
    for name, value in params.as_dict().items():
        if value is None:
            continue
        option = f"--{name.replace('_', '-')}"
        if kind not in _USED_BY[name]:
            raise UsageError(
                f"{option} does not apply to a {kind} index", hint=f"it is for --index {' / '.join(_USED_BY[name])}"
            )
        if value < 1:
            raise UsageError(f"{option} must be >= 1, got {value}", hint=f"e.g. {option} 8")
    if params.nbits is not None and params.nbits > 16:
        raise UsageError(f"--nbits must be between 1 and 16, got {params.nbits}", hint="8 is the usual choice")


def normalise(vectors: np.ndarray, what: str) -> np.ndarray:
    """Rows divided by their L2 norm, computed as evaluation does (float32), so scores match bit for bit."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    zero = int(np.count_nonzero(norms == 0))
    if zero:
        raise UsageError(
            f"{what} has {zero} all-zero row(s): cosine similarity is undefined", hint="use --distance euclidean"
        )
    result: np.ndarray = (vectors / norms).astype(np.float32, copy=False)
    return result


def _default_nlist(n: int) -> int:
    return max(1, min(int(4 * np.sqrt(n)), n // POINTS_PER_CENTROID))


def _build(kind: IndexKind, vectors: np.ndarray, distance: Distance, params: IndexParams) -> tuple[Any, dict[str, Any]]:
    """(faiss index holding `vectors`, the parameters actually used)."""
    import faiss

    n, dim = vectors.shape
    metric = faiss.METRIC_INNER_PRODUCT if distance == "cosine" else faiss.METRIC_L2
    used: dict[str, Any] = {}
    index: Any
    if kind == "flat":
        index = faiss.IndexFlatIP(dim) if distance == "cosine" else faiss.IndexFlatL2(dim)
    elif kind == "hnsw":
        used = {
            "m": params.m or 32,
            "ef_construction": params.ef_construction or 40,
            "ef_search": params.ef_search or 64,
        }
        index = faiss.IndexHNSWFlat(dim, used["m"], metric)
        index.hnsw.efConstruction = used["ef_construction"]
        index.hnsw.efSearch = used["ef_search"]
    else:
        nlist = params.nlist or _default_nlist(n)
        used = {"nlist": nlist, "nprobe": min(params.nprobe or 8, nlist)}
        centroids = nlist
        if kind == "ivfpq":
            used |= {"m": params.m or 8, "nbits": params.nbits or 8}
            if dim % used["m"]:
                raise UsageError(
                    f"--m {used['m']} does not divide the embedding dimension {dim}",
                    hint="PQ splits each vector into m equal parts; pick a divisor of the dimension",
                )
            centroids = max(nlist, 2 ** used["nbits"])
        if n < POINTS_PER_CENTROID * centroids:
            what = f"nlist={nlist}" if centroids == nlist else f"2^nbits={centroids} PQ centroids"
            raise UsageError(
                f"an {kind} index with {what} needs at least {POINTS_PER_CENTROID * centroids} gallery vectors "
                f"to train on ({POINTS_PER_CENTROID} per centroid), the gallery has {n}",
                hint="lower --nlist / --nbits, or use --index flat or hnsw for a gallery this small",
            )
        quantizer = faiss.IndexFlatIP(dim) if distance == "cosine" else faiss.IndexFlatL2(dim)
        if kind == "ivf":
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, metric)
        else:
            index = faiss.IndexIVFPQ(quantizer, dim, nlist, used["m"], used["nbits"], metric)
        index.train(vectors)
        index.nprobe = used["nprobe"]
    index.add(vectors)
    return index, used


@dataclass
class GalleryIndex:
    """A loaded (or freshly built) index: the faiss object, its items and its metadata."""

    index: Any
    meta: dict[str, Any]
    paths: list[str]
    labels: np.ndarray | None = None
    class_names: list[str] | None = None
    root: Path | None = None
    _gallery: np.ndarray | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return int(self.meta["size"])

    @property
    def dimension(self) -> int:
        return int(self.meta["dimension"])

    def label_text(self, position: int) -> str:
        """The label of gallery item `position` as shown to the user ("" when unknown)."""
        if self.labels is None:
            return ""
        label = int(self.labels[position])
        return self.class_names[label] if self.class_names is not None else str(label)


def build_index(
    gallery: Embeddings, *, kind: str = "flat", distance: Distance = "cosine", params: IndexParams | None = None
) -> GalleryIndex:
    """An index over `gallery`'s vectors (normalised first for cosine) with metadata from its file."""
    chosen = check_kind(kind)
    settings = params or IndexParams()
    check_params(chosen, settings)
    if distance not in ("cosine", "euclidean"):
        raise UsageError(f"unknown distance {distance!r}", hint="use cosine or euclidean")
    vectors = np.ascontiguousarray(gallery.embeddings, dtype=np.float32)
    if distance == "cosine":
        vectors = normalise(vectors, "the gallery embeddings")
    index, used = _build(chosen, vectors, distance, settings)
    source = gallery.meta
    meta = {
        "kind": chosen,
        "params": used,
        "distance": distance,
        "dimension": int(vectors.shape[1]),
        "size": int(vectors.shape[0]),
        "run": source.get("run"),
        "run_id": source.get("run_id"),
        "model_fingerprint": source.get("model_fingerprint"),
        "source": source.get("source"),
        "preprocessing": source.get("preprocessing"),
        "faiss_version": _faiss_version(),
        "dmlbench_version": dmlbench.__version__,
    }
    return GalleryIndex(index, meta, list(gallery.paths), gallery.labels, gallery.class_names, None, vectors)


def _faiss_version() -> str:
    import faiss

    return str(getattr(faiss, "__version__", "unknown"))


def check_index_output(path: PathArg, *, force: bool = False) -> Path:
    """`path` as a new index folder in an existing folder; an existing index only with `force`."""
    target = Path(path)
    if not target.parent.is_dir():
        raise MissingInputError(
            f"the output folder {target.parent} does not exist", hint=f"create it first: mkdir -p {target.parent}"
        )
    if target.exists() and not force:
        raise UsageError(f"{target} already exists", hint="pass --force to replace it, or pick another -o")
    if target.exists() and not (target / META_FILE).is_file():
        raise UsageError(f"{target} exists and is not an index", hint="pick another -o; --force replaces indexes only")
    return target


def save_index(built: GalleryIndex, path: PathArg, *, force: bool = False) -> Path:
    """Write the index folder atomically: built in a hidden sibling folder, then renamed into place."""
    import faiss

    target = check_index_output(path, force=force)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        faiss.write_index(built.index, str(staging / INDEX_FILE))
        items: dict[str, np.ndarray] = {PATHS_KEY: np.array(built.paths, dtype=str)}
        if built.labels is not None:
            items[LABELS_KEY] = np.asarray(built.labels, dtype=np.int64)
        if built.class_names is not None:
            items[CLASS_NAMES_KEY] = np.array(built.class_names, dtype=str)
        with atomic_path(staging / ITEMS_FILE) as tmp, tmp.open("wb") as handle:
            np.savez(handle, **items)  # type: ignore[arg-type]
        write_json_atomic(staging / META_FILE, built.meta)  # last: its presence means "complete"
        staging.chmod(0o777 & ~_umask())
        if target.exists():
            retired = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(retired)
            staging.rename(target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def load_index(path: PathArg) -> GalleryIndex:
    """An index folder written by `save_index`."""
    import faiss

    root = Path(path)
    if not root.exists():
        raise MissingInputError(f"index {root} does not exist", hint="build it with `dmlbench index ... -o INDEX`")
    if not (root / META_FILE).is_file() or not (root / INDEX_FILE).is_file():
        raise MissingInputError(
            f"{root} is not a complete index folder (no {META_FILE} / {INDEX_FILE})",
            hint="rebuild it with `dmlbench index ... -o INDEX --force`",
        )
    try:
        meta = read_json(root / META_FILE)
        index = faiss.read_index(str(root / INDEX_FILE))
        with np.load(root / ITEMS_FILE, allow_pickle=False) as items:
            paths = [str(p) for p in items[PATHS_KEY].tolist()]
            labels = np.asarray(items[LABELS_KEY]) if LABELS_KEY in items.files else None
            names = [str(n) for n in items[CLASS_NAMES_KEY].tolist()] if CLASS_NAMES_KEY in items.files else None
    except (ValueError, OSError, RuntimeError, KeyError) as err:
        raise MissingInputError(
            f"cannot read the index {root}: {first_line(err)}",
            hint="rebuild it with `dmlbench index ... -o INDEX --force`",
        ) from None
    if int(index.ntotal) != int(meta.get("size", -1)) or len(paths) != int(index.ntotal):
        raise MissingInputError(f"the index {root} is inconsistent", hint="rebuild it with --force")
    return GalleryIndex(index, meta, paths, labels, names, root)


class _FlatIndexBackend(SearchBackend):
    """A saved flat index behind evaluation's search interface, so evaluation's ordering applies."""

    def __init__(self, built: GalleryIndex) -> None:
        gallery = built._gallery if built._gallery is not None else built.index.reconstruct_n(0, built.index.ntotal)
        super().__init__(np.ascontiguousarray(gallery, dtype=np.float32), built.meta["distance"])
        self._index = built.index
        self.name = f"faiss {type(built.index).__name__}"

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        distances, indices = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        scores = distances if self.distance == "cosine" else -distances
        return scores.astype(np.float32, copy=False), indices.astype(np.int64, copy=False)


def check_k(built: GalleryIndex, k: int) -> None:
    """k neighbours must exist: between 1 and the gallery's size."""
    if k < 1 or k > built.size:
        raise UsageError(
            f"-k {k} is not between 1 and the gallery's {built.size} items", hint=f"use -k {built.size} or less"
        )


def search(
    built: GalleryIndex,
    queries: np.ndarray,
    k: int,
    *,
    nprobe: int | None = None,
    ef_search: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(scores [Q, k], gallery positions [Q, k]) best first; an approximate index may return fewer than k
    neighbours for a query (position -1, score NaN)."""
    kind = check_kind(str(built.meta.get("kind")))
    check_params(kind, IndexParams(nprobe=nprobe, ef_search=ef_search))
    matrix = np.ascontiguousarray(queries, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[1] != built.dimension:
        got = matrix.shape[1] if matrix.ndim == 2 else tuple(matrix.shape)
        raise UsageError(
            f"the queries have dimension {got}, the index {built.dimension}",
            hint="query with the model (or embeddings) the index was built from",
        )
    check_k(built, k)
    if built.meta["distance"] == "cosine":
        matrix = normalise(matrix, "the query embeddings")
    if kind == "flat":
        parts = list(iter_neighbours(_FlatIndexBackend(built), matrix, k, exclude_self=False))
        return np.concatenate([p[2] for p in parts]), np.concatenate([p[3] for p in parts])
    if nprobe is not None:
        built.index.nprobe = nprobe
    if ef_search is not None:
        built.index.hnsw.efSearch = ef_search
    distances, indices = built.index.search(matrix, k)
    scores = np.where(indices >= 0, distances if built.meta["distance"] == "cosine" else -distances, np.nan)
    return scores.astype(np.float32), indices.astype(np.int64)


@dataclass(frozen=True)
class Neighbour:
    """One row of a search result."""

    query: str
    rank: int
    path: str
    label: str
    score: float


def neighbours(
    built: GalleryIndex, query_paths: list[str], scores: np.ndarray, positions: np.ndarray
) -> list[Neighbour]:
    """The search result as rows (query, rank from 1, neighbour path, its label, score)."""
    rows: list[Neighbour] = []
    for q, query in enumerate(query_paths):
        for rank, (score, position) in enumerate(zip(scores[q], positions[q], strict=True), start=1):
            if position < 0:
                continue
            rows.append(Neighbour(query, rank, built.paths[position], built.label_text(int(position)), float(score)))
    return rows


def check_same_model(built: GalleryIndex, fingerprint: str | None, what: str) -> None:
    """Refuse queries embedded by another model than the gallery (same dimension or not)."""
    expected = built.meta.get("model_fingerprint")
    if expected and fingerprint and expected != fingerprint:
        raise UsageError(
            f"{what} comes from another model than the index (weights {fingerprint[:12]} vs {expected[:12]})",
            hint=f"query with the run the index was built from ({built.meta.get('run') or 'see index.json'})",
        )


def describe(built: GalleryIndex) -> str:
    """One line about an index, for the CLI."""
    params = ", ".join(f"{k}={v}" for k, v in built.meta.get("params", {}).items())
    kind = built.meta["kind"] + (f" ({params})" if params else "")
    return f"{kind}, {built.size} items of dimension {built.dimension}, {built.meta['distance']}"
