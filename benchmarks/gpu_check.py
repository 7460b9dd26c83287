"""The GPU check of issue 14, as one prepared script: parity, loss timing and host syncs, AMP step, evaluation.

    python benchmarks/gpu_check.py --out DIR              # on a CUDA machine, about 10 minutes
    python benchmarks/gpu_check.py --dry-run --out DIR    # CPU, tiny sizes, seconds (run in CI)

Sections, in order (results are written after each, so a run cut short keeps what it measured):

1. parity: the four losses on CUDA vs CPU, values and gradients (float64 1e-9, float32 1e-4, the CPU
   tests' tolerances), and the clustering loss's medoids on tie-free batches;
2. clustering: the clustering loss's forward+backward on CUDA at n = 128 with k = 32, 64, 96 and n = 256
   with k = 64, 128 (median of 20 after warm-up), its greedy and PAM parts alone, the host syncs per call
   and inside the greedy loop (`torch.cuda.set_sync_debug_mode("warn")`, one warning per sync), the
   PAM variants (a host read every round, every PAM_CHUNK rounds, never, and the CPU path's data-dependent
   PAM), and the greedy loop replayed from a CUDA graph (to decide whether capturing it is worth it);
3. train: one training step (`dmlbench.training.loop.train_step`: googlenet, random init, 224 px, batch
   128 = 64 classes x 2, bf16 autocast, channels-last) in images/s for each loss, against the bare
   backbone forward+backward on the same synthetic batch;
4. evaluation: SOP-sized embeddings (60,502 x 128, 11,316 classes) evaluated on the GPU (faiss-gpu when
   installed, else the torch path) and on the CPU, same metrics; retrieval metrics must agree to 1e-4;
5. pipeline: benchmarks/bench_pipeline.py with this device: 3,000 generated CUB-sized JPEGs through the
   image-file pipeline (before / after, 1, 2 and all cores, with and without the decode cache), beside
   googlenet's bare forward+backward at batch 128 (the ratio says whether the GPU waits for data).

The results land in DIR/gpu_check.json and DIR/gpu_check.md; `criteria` holds the issue's done checks.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import platform
import shutil
import statistics
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

import dmlbench
import dmlbench.losses.clustering as clustering
from dmlbench.config import ModelConfig, OptimConfig, ScheduleConfig
from dmlbench.errors import DmlbenchError
from dmlbench.evaluation import EvalOptions, evaluate_embeddings
from dmlbench.losses import ClusteringLoss, build_loss
from dmlbench.losses._distances import pairwise_distance
from dmlbench.losses._scores import ScoreTables
from dmlbench.models import build_embedder
from dmlbench.training.distributed import DistContext
from dmlbench.training.loop import Parts, train_step
from dmlbench.training.optim import build_optimizer, build_scheduler
from dmlbench.utils.device import resolve_device
from dmlbench.utils.io import write_json_atomic, write_text_atomic

# The four losses (the paper's); the PML-backed ones need the dataset's class count to be built.
PAPER_LOSSES = ("clustering", "triplet", "lifted", "npairs")

FULL: dict[str, Any] = {
    "parity_sizes": [(16, 4), (64, 16), (128, 64)],
    "clustering_sizes": [(128, 32), (128, 64), (128, 96), (256, 64), (256, 128)],
    "clustering_repeats": 20,
    "embedding_dim": 64,
    "train": {"backbone": "googlenet", "image_size": 224, "classes": 64, "per_class": 2}
    | {"warmup": 3, "steps": 10, "rounds": 2},
    "eval": {"n": 60_502, "dim": 128, "classes": 11_316, "recall_k": [1, 10, 100, 1000]},
    # CUB-sized JPEGs through the image-file pipeline (benchmarks/bench_pipeline.py) beside googlenet
    "pipeline": {"kind": "cub", "images": 3000, "batch": 128, "batches": 12, "backbone": "googlenet", "steps": 10},
}
DRY: dict[str, Any] = {
    "parity_sizes": [(8, 2), (16, 4)],
    "clustering_sizes": [(16, 4), (24, 6)],
    "clustering_repeats": 3,
    "embedding_dim": 16,
    # the small CNN: the dry run checks the script, and googlenet alone would take most of a CI minute
    "train": {"backbone": "small_cnn", "image_size": 28, "classes": 2, "per_class": 2}
    | {"warmup": 1, "steps": 1, "rounds": 1},
    "eval": {"n": 1_000, "dim": 16, "classes": 200, "recall_k": [1, 10, 100]},
    "pipeline": {"kind": "cub", "images": 24, "batch": 4, "batches": 3, "backbone": "small_cnn", "steps": 1},
}
SECTIONS = ["parity", "clustering", "train", "evaluation", "pipeline"]
GOAL_MS = 5.0  # the goal for the clustering loss at n = 128, k = 64
TRAIN_RATIO_GOAL = 0.9
EVAL_ATOL = 1e-4


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


@contextlib.contextmanager
def _count_syncs(device: torch.device) -> Iterator[list[str]]:
    """Collect one entry per synchronizing CUDA call (set_sync_debug_mode warns on each); nothing on CPU."""
    found: list[str] = []
    if device.type != "cuda":
        yield found
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield found
        finally:
            torch.cuda.set_sync_debug_mode("default")
    found.extend(str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message))


def _batch(
    n: int, k: int, dim: int, seed: int, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(n, dim, generator=gen, dtype=torch.float64), dim=1).to(dtype)
    return x, torch.randperm(n, generator=gen) % k


# -- 1. parity -------------------------------------------------------------------------------------------


def parity(device: torch.device, sizes: list[tuple[int, int]], dim: int) -> dict[str, Any]:
    rows = []
    for name in PAPER_LOSSES:
        for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-4)):
            for n, k in sizes:
                x, labels = _batch(n, k, dim, seed=n + k)
                x = x.to(dtype)
                loss = build_loss(name)
                values, grads = [], []
                for target in (torch.device("cpu"), device):
                    leaf = x.to(target).requires_grad_()
                    value = loss(leaf, labels.to(target))
                    value.backward()
                    assert leaf.grad is not None
                    values.append(float(value.detach()))
                    grads.append(leaf.grad.cpu())
                value_diff = abs(values[1] - values[0])
                grad_diff = float((grads[1] - grads[0]).abs().max())
                ok = value_diff <= tol * (1 + abs(values[0])) and bool(
                    torch.allclose(grads[1], grads[0], rtol=tol, atol=tol)
                )
                rows.append(
                    {"loss": name, "dtype": str(dtype).removeprefix("torch."), "n": n, "k": k, "cpu": values[0]}
                    | {"device": values[1], "value_diff": value_diff, "grad_max_diff": grad_diff, "ok": ok}
                )
    medoids = []
    for n, _ in sizes:
        x, labels = _batch(n, max(1, n // 4), dim, seed=7 * n, dtype=torch.float64)  # 4 per class: no 2-member ties
        loss_fn = ClusteringLoss()
        cpu, dev = loss_fn.inference(x, labels), loss_fn.inference(x.to(device), labels.to(device))
        medoids.append(
            {"n": n, "k": max(1, n // 4), "ok": cpu.medoids.tolist() == dev.medoids.cpu().tolist()}
            | {"score_diff": abs(cpu.score - dev.score)}
        )
    return {"rows": rows, "medoids": medoids, "ok": all(r["ok"] for r in rows + medoids)}


# -- 2. clustering loss timing and host syncs -------------------------------------------------------------


def _graph_greedy_ms(
    dist: torch.Tensor, labels: torch.Tensor, k: int, tables: ScoreTables, tol: float, repeats: int
) -> dict[str, Any]:
    """The sync-free greedy loop captured once in a CUDA graph, replayed: time and equality with eager."""
    device = dist.device
    eager = clustering._greedy(dist, labels, k, 1.0, tables, tol, sync_free=True)
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):  # warm-up on a side stream, as CUDA graph capture requires
        clustering._greedy(dist, labels, k, 1.0, tables, tol, sync_free=True)
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = clustering._greedy(dist, labels, k, 1.0, tables, tol, sync_free=True)
    replay_ms = _median_ms(graph.replay, device, repeats)
    return {"replay_ms": replay_ms, "same_medoids": bool(torch.equal(captured, eager))}


def clustering_timing(device: torch.device, sizes: list[tuple[int, int]], dim: int, repeats: int) -> dict[str, Any]:
    rows = []
    for n, k in sizes:
        x, labels = _batch(n, k, dim, seed=1000 + n + k)
        x, labels = x.to(device), labels.to(device)
        loss_fn = ClusteringLoss()

        def step(loss_fn: ClusteringLoss = loss_fn, x: torch.Tensor = x, labels: torch.Tensor = labels) -> None:
            leaf = x.detach().requires_grad_()
            loss_fn(leaf, labels).backward()

        total_ms = _median_ms(step, device, repeats)
        dist = pairwise_distance(x).double()
        dist = 0.5 * (dist + dist.T)
        tables = ScoreTables(labels, k)
        tol = clustering.TIE_RTOL * (float(dist.sum(dim=1).max()) + 1.0)
        sync_free = device.type != "cpu"  # what facility_inference picks on this device
        greedy = functools.partial(clustering._greedy, dist, labels, k, 1.0, tables, tol, sync_free=sync_free)
        pam = functools.partial(
            clustering._pam_sync_free if sync_free else clustering._pam, dist, greedy(), 1.0, tables, tol
        )
        row: dict[str, Any] = {
            "n": n,
            "k": k,
            "forward_backward_ms": total_ms,
            "greedy_ms": _median_ms(greedy, device, repeats),
            "pam_ms": _median_ms(pam, device, repeats),
        }
        # PAM variants on the same greedy medoids: host reads every round / never / the CPU path's
        for key, variant in (
            ("pam_ms_chunk1", functools.partial(clustering._pam_sync_free, chunk=1)),
            ("pam_ms_no_reads", functools.partial(clustering._pam_sync_free, chunk=None)),
            ("pam_ms_data_dependent", clustering._pam),
        ):
            row[key] = _median_ms(functools.partial(variant, dist, greedy(), 1.0, tables, tol), device, repeats)
        # the whole inference, sync-free vs the data-dependent (CPU default) path on the same device
        for key, flag in (("inference_ms", True), ("inference_ms_data_dependent", False)):
            infer = functools.partial(
                clustering.facility_inference, dist, labels, margin_multiplier=1.0, sync_free=flag
            )
            row[key] = _median_ms(infer, device, repeats)
        with _count_syncs(device) as per_call:
            step()
            _sync(device)
        with _count_syncs(device) as in_greedy:
            greedy()
        with _count_syncs(device) as in_pam:
            pam()
        counted = device.type == "cuda"
        row["syncs_per_call"] = len(per_call) if counted else None
        row["syncs_in_greedy_loop"] = len(in_greedy) if counted else None
        row["syncs_in_pam"] = len(in_pam) if counted else None
        row["sync_kinds"] = sorted(set(per_call))
        if device.type == "cuda":
            try:
                row["greedy_cuda_graph"] = _graph_greedy_ms(dist, labels, k, tables, tol, repeats)
            except Exception as exc:  # the capture is an experiment: record why it failed, keep the rest
                row["greedy_cuda_graph"] = {"error": f"{type(exc).__name__}: {exc}"}
        rows.append(row)
    return {"rows": rows}


# -- 3. training step with AMP vs the bare backbone ------------------------------------------------------


def _parts(model: torch.nn.Module, loss_name: str, device: torch.device, amp: bool, channels_last: bool) -> Parts:
    """The trainer's step inputs for a synthetic batch (optimizer and schedule as the defaults resolve)."""
    optimizer = build_optimizer(model, OptimConfig(name="rmsprop", lr=1e-5, weight_decay=0.0, head_lr_multiplier=10.0))  # type: ignore[arg-type]
    return Parts(
        model=model,
        loss_fn=build_loss(loss_name).to(device),
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, ScheduleConfig(), total_steps=10**9),
        scaler=None,
        device=device,
        dist=DistContext(),
        total_steps=10**9,
        global_batch_size=0,
        checkpoint_every=10**9,
        amp_dtype=torch.bfloat16 if amp else None,
        channels_last=channels_last,
    )


def train_throughput(device: torch.device, spec: dict[str, Any]) -> dict[str, Any]:
    size, batch = spec["image_size"], spec["classes"] * spec["per_class"]
    amp = channels_last = device.type == "cuda"
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, size, size, generator=gen).to(device)
    labels = torch.arange(spec["classes"]).repeat_interleave(spec["per_class"])[torch.randperm(batch, generator=gen)]
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    torch.manual_seed(0)
    model = build_embedder(ModelConfig(backbone=spec["backbone"], embedding_dim=64, pretrained=False)).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    rows = []
    for loss_name in PAPER_LOSSES:
        # one backbone for all four losses (throughput only); each loss gets the normalisation it expects
        model.normalize = build_loss(loss_name).expects_normalized
        parts = _parts(model, loss_name, device, amp, channels_last)

        def full(parts: Parts = parts) -> None:
            train_step(parts, images, labels)

        def bare(model: torch.nn.Module = model) -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                out = model(images)
            model.zero_grad(set_to_none=True)
            out.float().sum().backward()

        # interleaved rounds, best of each: a shared host can slow either one
        full_ms = bare_ms = math.inf
        for _ in range(spec["rounds"]):
            full_ms = min(full_ms, _median_ms(full, device, spec["steps"], spec["warmup"]))
            bare_ms = min(bare_ms, _median_ms(bare, device, spec["steps"], spec["warmup"]))
        rows.append(
            {"loss": loss_name, "step_ms": full_ms, "bare_ms": bare_ms}
            | {"step_img_s": batch / full_ms * 1e3, "bare_img_s": batch / bare_ms * 1e3, "ratio": bare_ms / full_ms}
        )
    return {"backbone": spec["backbone"], "image_size": size, "batch": batch, "amp": amp, "rows": rows}


# -- 4. evaluation on the GPU vs the CPU ------------------------------------------------------------------


def _sop_like(n: int, dim: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Clustered embeddings with SOP's shape: every class at least 2 items, the rest spread at random."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.repeat(np.arange(classes), 2), rng.integers(0, classes, n - 2 * classes)])
    labels = rng.permutation(labels)
    centers = rng.normal(size=(classes, dim)).astype(np.float32)
    x = centers[labels] + 0.9 * rng.normal(size=(n, dim)).astype(np.float32)
    return x, labels


def _evaluate(embeddings: np.ndarray, labels: np.ndarray, recall_k: list[int], device: str) -> dict[str, float]:
    """The one call into evaluation."""
    options = EvalOptions(
        recall_k=tuple(recall_k),
        metrics=(*(f"recall@{k}" for k in recall_k), "precision@1", "r_precision", "map@r", "nmi"),
        device=device,
    )
    return evaluate_embeddings(embeddings, labels, options).metrics


def evaluation(device: torch.device, spec: dict[str, Any]) -> dict[str, Any]:
    x, labels = _sop_like(spec["n"], spec["dim"], spec["classes"])
    timings, results = {}, {}
    for target in (str(device), "cpu"):
        start = time.perf_counter()
        results[target] = _evaluate(x, labels, spec["recall_k"], target)
        timings[target] = time.perf_counter() - start
    on_device, on_cpu = results[str(device)], results["cpu"]
    diffs = {key: abs(on_device[key] - on_cpu[key]) for key in on_cpu}
    # k-means differs by implementation (faiss-gpu / torch vs faiss-cpu), so NMI is reported, not checked
    retrieval = {key: diff for key, diff in diffs.items() if key != "nmi"}
    faiss_gpus = 0
    with contextlib.suppress(Exception):
        import faiss

        faiss_gpus = int(faiss.get_num_gpus())
    return {
        "n": spec["n"],
        "dim": spec["dim"],
        "classes": spec["classes"],
        "faiss_gpus": faiss_gpus,
        "device_metrics": on_device,
        "cpu_metrics": on_cpu,
        "abs_diff": diffs,
        "device_seconds": timings[str(device)],
        "cpu_seconds": timings["cpu"],
        "ok": max(retrieval.values()) <= EVAL_ATOL,
    }


# -- environment, criteria, output -----------------------------------------------------------------------


def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {
        "dmlbench": dmlbench.__version__,
        "torch": torch.__version__,
        "cuda_runtime": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
        "device": str(device),
    }
    with contextlib.suppress(Exception):
        import faiss

        env["faiss"] = faiss.__version__
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        with contextlib.suppress(Exception):
            query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
            env["driver"] = subprocess.run(query, capture_output=True, text=True, timeout=30).stdout.strip()
    return env


def criteria(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's done checks, from whatever sections completed (None: not measured)."""
    out: dict[str, Any] = {}
    rows = {(r["n"], r["k"]): r for r in results.get("clustering", {}).get("rows", [])}
    train = results.get("train", {}).get("rows", [])
    bare_ms = min((r["bare_ms"] for r in train), default=None)
    target = rows.get((128, 64))
    if target is not None:
        out["clustering_128_64_ms"] = target["forward_backward_ms"]
        out["clustering_under_goal_ms"] = target["forward_backward_ms"] < GOAL_MS
        out["clustering_under_backbone"] = None if bare_ms is None else target["forward_backward_ms"] < bare_ms
        syncs = target["syncs_in_greedy_loop"]
        out["greedy_loop_sync_free"] = None if syncs is None else syncs == 0
    if train:
        out["amp_step_at_least_90pct_of_bare"] = {r["loss"]: r["ratio"] >= TRAIN_RATIO_GOAL for r in train}
    if "evaluation" in results:
        out["eval_agrees_1e-4"] = results["evaluation"]["ok"]
    if "parity" in results:
        out["parity"] = results["parity"]["ok"]
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return "-" if value is None else str(value)


def _table(rows: list[dict[str, Any]], keys: list[str]) -> list[str]:
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_fmt(row.get(key)) for key in keys) + " |" for row in rows]
    return lines


def markdown(results: dict[str, Any]) -> str:
    lines = ["# dmlbench GPU check", ""]
    if results["dry_run"]:
        lines += ["**Dry run**: CPU and tiny sizes; it checks the script, it measures nothing of interest.", ""]
    lines += [f"- {key}: {_fmt(value)}" for key, value in results["environment"].items()]
    lines += ["", "## Criteria", ""] + [f"- {key}: {_fmt(value)}" for key, value in results["criteria"].items()]
    if "parity" in results:
        failed = [r for r in results["parity"]["rows"] + results["parity"]["medoids"] if not r["ok"]]
        lines += ["", "## Parity (device vs CPU)", "", f"all ok: {results['parity']['ok']}; failures: {len(failed)}"]
        lines += _table(failed, ["loss", "dtype", "n", "k", "value_diff", "grad_max_diff"]) if failed else []
    if "clustering" in results:
        keys = ["n", "k", "forward_backward_ms", "greedy_ms", "pam_ms", "inference_ms", "inference_ms_data_dependent"]
        keys += ["syncs_per_call", "syncs_in_greedy_loop"]
        rows = [
            r | {"graph_replay_ms": r.get("greedy_cuda_graph", {}).get("replay_ms")}
            for r in results["clustering"]["rows"]
        ]
        lines += ["", "## Clustering loss (median ms)", ""] + _table(rows, [*keys, "syncs_in_pam", "graph_replay_ms"])
        pam_keys = ["n", "k", "pam_ms", "pam_ms_chunk1", "pam_ms_no_reads", "pam_ms_data_dependent"]
        lines += ["", f"PAM variants (ms; pam_ms uses PAM_CHUNK = {clustering.PAM_CHUNK})", ""]
        lines += _table(rows, pam_keys)
    if "train" in results:
        train = results["train"]
        lines += ["", f"## Training step ({train['backbone']}, {train['image_size']} px, batch {train['batch']})", ""]
        lines += _table(train["rows"], ["loss", "step_img_s", "bare_img_s", "ratio", "step_ms", "bare_ms"])
    if "evaluation" in results:
        ev = results["evaluation"]
        rows = [
            {"metric": key, "device": ev["device_metrics"][key], "cpu": ev["cpu_metrics"][key]}
            for key in ev["abs_diff"]
        ]
        rows = [row | {"abs_diff": ev["abs_diff"][row["metric"]]} for row in rows]
        lines += ["", f"## Evaluation ({ev['n']} x {ev['dim']}, {ev['classes']} classes)", ""]
        lines += _table(rows, ["metric", "device", "cpu", "abs_diff"])
        lines += [
            "",
            f"device {ev['device_seconds']:.1f} s, cpu {ev['cpu_seconds']:.1f} s, faiss GPUs {ev['faiss_gpus']}",
        ]
    if "pipeline" in results:
        pipe = results["pipeline"]
        backbone = pipe["backbone"]
        lines += ["", f"## Data pipeline ({pipe['images']} {pipe['kind']}-sized JPEGs, {pipe['cores']} cores)", ""]
        lines += [f"{backbone['name']} forward+backward: {backbone['img/s']:.0f} img/s (batch {backbone['batch']})", ""]
        lines += _table(pipe["rows"], ["pipeline", "cache", "cores", "img/s", "img/s per core", "pipeline / backbone"])
    if results.get("errors"):
        lines += ["", "## Errors", ""] + [f"- {name}: {error}" for name, error in results["errors"].items()]
    return "\n".join(lines) + "\n"


def pipeline(device: torch.device, spec: dict[str, Any], out: Path) -> dict[str, Any]:
    """benchmarks/bench_pipeline.py on this device: images/s of the data pipeline beside the backbone's."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:  # loaded by path (the dry-run test) rather than run as a script
        sys.path.insert(0, here)
    import bench_pipeline

    args = argparse.Namespace(
        kind=spec["kind"],
        images=spec["images"],
        root=out / "pipeline-data",
        device=str(device),
        batch=spec["batch"],
        batches=spec["batches"],
        backbone=spec["backbone"],
        backbone_steps=spec["steps"],
    )
    try:
        return bench_pipeline.run(args, log=lambda message: print(message, file=sys.stderr, flush=True))
    finally:
        shutil.rmtree(args.root, ignore_errors=True)  # the generated JPEGs and their cache


def _write(out: Path, results: dict[str, Any]) -> None:
    results["criteria"] = criteria(results)
    write_json_atomic(out / "gpu_check.json", results)
    write_text_atomic(out / "gpu_check.md", markdown(results))


def run(out: Path, *, dry_run: bool, device_spec: str, sections: list[str]) -> dict[str, Any]:
    device = torch.device("cpu") if dry_run else resolve_device(device_spec)
    sizes = DRY if dry_run else FULL
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"dry_run": dry_run, "environment": environment(device), "errors": {}}
    steps: dict[str, Callable[[], dict[str, Any]]] = {
        "parity": lambda: parity(device, sizes["parity_sizes"], sizes["embedding_dim"]),
        "clustering": lambda: clustering_timing(
            device, sizes["clustering_sizes"], sizes["embedding_dim"], sizes["clustering_repeats"]
        ),
        "train": lambda: train_throughput(device, sizes["train"]),
        "evaluation": lambda: evaluation(device, sizes["eval"]),
        "pipeline": lambda: pipeline(device, sizes["pipeline"], out),
    }
    for name in sections:
        started = time.perf_counter()
        print(f"[gpu_check] {name} ...", file=sys.stderr, flush=True)
        try:
            results[name] = steps[name]() | {"seconds": time.perf_counter() - started}
        except Exception:  # one broken section must not cost the others' device time
            results["errors"][name] = traceback.format_exc(limit=8)
        _write(out, results)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: checks the script itself")
    parser.add_argument("--device", default="cuda", help="the device to check (default cuda)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=None)
    args = parser.parse_args(argv)
    try:
        results = run(
            args.out,
            dry_run=args.dry_run,
            device_spec=args.device,
            sections=args.sections or SECTIONS,
        )
    except DmlbenchError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    print((args.out / "gpu_check.md").read_text(encoding="utf-8"))
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
