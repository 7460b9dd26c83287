"""The contract a metric-learning loss must meet to train in dmlbench, checked on any loss by name.

`loss(embeddings[N, D], labels[N]) -> scalar` is all the trainer asks for, but it relies on more:

- a finite scalar on random P x K batches, with finite gradients that are not all zero;
- the same value (and permuted gradients) when the batch rows are shuffled: samplers order rows freely;
- the same value for class ids 0..P-1 and for large arbitrary ids in the same order: datasets' labels
  are arbitrary integers (CUB's are 1..100, held-out validation classes leave gaps);
- edge batches (one class, singleton classes, no positive pair) give a clear `LossInputError` or a
  finite value, never NaN;
- float64 and float32 agree; embeddings made under bf16 autocast (upcast, as the trainer does) give a
  finite loss close to float32's;
- two gloo processes, each embedding its half of the global batch and all-gathering it with gradient
  (training/distributed.py: `gather_batch`), get the gradients of one process on the whole batch.

Forward+backward times at two batch sizes are measured next to the built-in losses in the same process.
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dmlbench.events import Event, EventHandler, emit
from dmlbench.losses import LOSSES, LossInputError

DIM = 16  # embedding size of the contract checks (timings use their own)
IN_FEATURES = 24  # width of the linear "network" the autocast and DDP checks embed with
VALUE_RTOL = 1e-4  # float32 summation order differs between a batch and its permutation
GRAD_RTOL = 1e-3
FLOAT64_RTOL = 1e-3  # float32 vs float64 of the same loss
BF16_RTOL = 0.1  # bf16 rounds embeddings to ~3 significant digits before the float32 loss
WORLD = 2


@dataclass(frozen=True)
class CheckResult:
    """One row of the contract table."""

    check: str
    passed: bool
    detail: str


@dataclass
class ContractReport:
    """Every check of one loss (and the timings, filled by `time_losses`)."""

    name: str
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failed(self) -> list[CheckResult]:
        return [check for check in self.checks if not check.passed]


Builder = Callable[[int], nn.Module]  # num_classes -> a fresh loss, initialised identically every time


def _builder(name: str, params: Mapping[str, Any], dim: int) -> Builder:
    def build(num_classes: int) -> nn.Module:
        torch.manual_seed(0)  # proxies and class weights start the same in every build and process
        loss: nn.Module = LOSSES.build(name, params, embedding_dim=dim, num_classes=num_classes)
        return loss

    return build


def _pk_labels(classes: int, per_class: int, seed: int) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(per_class)
    return labels[torch.randperm(len(labels), generator=generator)]


def _embeddings(n: int, dim: int, seed: int) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, dim, generator=generator), dim=1)


@dataclass
class _Outcome:
    value: Tensor | None = None
    grad: Tensor | None = None
    param_grads: dict[str, Tensor] = field(default_factory=dict)
    error: BaseException | None = None

    def describe_error(self) -> str:
        err = self.error
        return f"{type(err).__name__}: {_one_line(str(err))}" if err is not None else ""


def _one_line(text: str, limit: int = 90) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _run(loss: nn.Module, embeddings: Tensor, labels: Tensor) -> _Outcome:
    """Forward and backward of one batch; an exception is an outcome, not a crash of the check."""
    leaf = embeddings.detach().clone().requires_grad_(True)
    loss.zero_grad(set_to_none=True)
    try:
        value = loss(leaf, labels)
        if not isinstance(value, Tensor) or value.numel() != 1:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise TypeError(f"the loss returned {shape}, not a scalar tensor")
        value = value.reshape(())
        if value.requires_grad:
            value.backward()  # type: ignore[no-untyped-call]
    except Exception as err:
        return _Outcome(error=err)
    grads = {n: p.grad.detach().clone() for n, p in loss.named_parameters() if p.grad is not None}
    return _Outcome(value.detach(), leaf.grad, grads)


def _finite(tensor: Tensor | None) -> bool:
    return tensor is None or bool(torch.isfinite(tensor).all())


def _close(a: Tensor, b: Tensor, rtol: float) -> bool:
    a, b = a.double(), b.double()
    scale = max(float(a.abs().max()), float(b.abs().max()), 1e-12)
    return bool(((a - b).abs() <= rtol * scale).all())


def _rel(a: Tensor, b: Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / max(float(b.double().abs().max()), 1e-12))


# -- the checks ------------------------------------------------------------------------------------------


def _check_random_batches(build: Builder, dim: int) -> CheckResult:
    details = []
    for classes, per_class in ((4, 4), (8, 2), (16, 4)):
        labels = _pk_labels(classes, per_class, seed=classes)
        outcome = _run(build(classes), _embeddings(len(labels), dim, seed=classes), labels)
        shape = f"{classes}x{per_class}"
        if outcome.error is not None:
            return CheckResult("finite scalar + gradients", False, f"{shape}: {outcome.describe_error()}")
        assert outcome.value is not None
        if not _finite(outcome.value):
            return CheckResult("finite scalar + gradients", False, f"{shape}: loss = {float(outcome.value)}")
        grads = [outcome.grad, *outcome.param_grads.values()]
        if not all(_finite(g) for g in grads):
            return CheckResult("finite scalar + gradients", False, f"{shape}: non-finite gradient")
        if outcome.grad is None or not bool((outcome.grad != 0).any()):
            return CheckResult("finite scalar + gradients", False, f"{shape}: zero gradient on the embeddings")
        details.append(f"{shape}: {float(outcome.value):.4g}")
    return CheckResult("finite scalar + gradients", True, ", ".join(details))


def _keeping_class_order(labels: Tensor, perm: Tensor) -> Tensor:
    """`perm` changed so that each class's rows keep their relative order (classes still interleave anew)."""
    kept = perm.clone()
    for label in torch.unique(labels):
        slots = torch.nonzero(labels[perm] == label).squeeze(1)
        kept[slots] = torch.nonzero(labels == label).squeeze(1)
    return kept


def _check_order(build: Builder, dim: int) -> CheckResult:
    labels = _pk_labels(8, 4, seed=1)
    embeddings = _embeddings(len(labels), dim, seed=1)
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(2))
    declared = getattr(build(8), "row_order", "any")
    if declared == "within_class":  # a documented dependence on each class's row order, and only on that
        perm = _keeping_class_order(labels, perm)
    first, second = _run(build(8), embeddings, labels), _run(build(8), embeddings[perm], labels[perm])
    for outcome in (first, second):
        if outcome.error is not None:
            return CheckResult("row order", False, outcome.describe_error())
    assert first.value is not None and second.value is not None
    if not _close(first.value, second.value, VALUE_RTOL):
        return CheckResult("row order", False, f"loss {float(first.value):.6g} -> {float(second.value):.6g} shuffled")
    if first.grad is not None and second.grad is not None and not _close(first.grad[perm], second.grad, GRAD_RTOL):
        return CheckResult("row order", False, f"gradients differ by {_rel(second.grad, first.grad[perm]):.2g} (rel)")
    if declared == "within_class":
        return CheckResult("row order", True, "declared within-class order: same loss when only classes interleave")
    return CheckResult("row order", True, "same loss and gradients with shuffled rows")


def _check_label_values(build: Builder, dim: int) -> CheckResult:
    labels = _pk_labels(8, 4, seed=3)
    embeddings = _embeddings(len(labels), dim, seed=3)
    # Large, gapped and increasing: a class keeps its rank, so per-class parameters keep their rows.
    mapping = torch.tensor([1_000_003, 1_000_017, 1_234_567, 2_000_000, 40_000_001, 40_000_002, 77_777_777, 2**40])
    small, large = _run(build(8), embeddings, labels), _run(build(8), embeddings, mapping[labels])
    for ids, outcome in (("0..7", small), ("large ids", large)):
        if outcome.error is not None:
            return CheckResult("class ids", False, f"{ids}: {outcome.describe_error()}")
    assert small.value is not None and large.value is not None
    if not _close(small.value, large.value, VALUE_RTOL):
        values = f"loss {float(small.value):.6g} (0..7) vs {float(large.value):.6g} (large)"
        return CheckResult("class ids", False, values)
    if small.grad is not None and large.grad is not None and not _close(small.grad, large.grad, GRAD_RTOL):
        return CheckResult("class ids", False, f"gradients differ by {_rel(large.grad, small.grad):.2g} (rel)")
    return CheckResult("class ids", True, "0..P-1 and large arbitrary ids give the same loss")


EDGE_BATCHES: dict[str, list[int]] = {
    "one class": [5] * 8,
    "singleton classes": [0, 0, 1, 1, 2, 2, 3, 4],
    "no positives": list(range(8)),
}


def _check_edge(build: Builder, dim: int, what: str, label_list: list[int]) -> CheckResult:
    labels = torch.tensor(label_list)
    outcome = _run(build(len(set(label_list)) + 1), _embeddings(len(labels), dim, seed=4), labels)
    check = f"edge: {what}"
    if isinstance(outcome.error, LossInputError):
        return CheckResult(check, True, f"clear error: {_one_line(outcome.error.message, 70)}")
    if outcome.error is not None:
        return CheckResult(check, False, f"{outcome.describe_error()} (raise LossInputError or return a value)")
    assert outcome.value is not None
    if not _finite(outcome.value) or not all(_finite(g) for g in (outcome.grad, *outcome.param_grads.values())):
        return CheckResult(check, False, f"loss {float(outcome.value)} or its gradient is not finite")
    return CheckResult(check, True, f"value {float(outcome.value) + 0.0:.4g}")


def _check_float64(build: Builder, dim: int) -> CheckResult:
    labels = _pk_labels(8, 4, seed=5)
    embeddings = _embeddings(len(labels), dim, seed=5)
    single = _run(build(8), embeddings, labels)
    double = _run(build(8).double(), embeddings.double(), labels)
    for precision, outcome in (("float32", single), ("float64", double)):
        if outcome.error is not None:
            return CheckResult("float64 vs float32", False, f"{precision}: {outcome.describe_error()}")
    assert single.value is not None and double.value is not None
    difference = _rel(single.value, double.value)
    if not _finite(double.value) or difference > FLOAT64_RTOL:
        values = f"{float(single.value):.6g} vs {float(double.value):.6g} (rel {difference:.2g})"
        return CheckResult("float64 vs float32", False, values)
    return CheckResult("float64 vs float32", True, f"rel difference {difference:.1g}")


def _check_bf16(build: Builder, dim: int) -> CheckResult:
    labels = _pk_labels(8, 4, seed=6)
    torch.manual_seed(6)
    net = nn.Linear(IN_FEATURES, dim)
    inputs = torch.randn(len(labels), IN_FEATURES)
    reference = _run(build(8), F.normalize(net(inputs), dim=1), labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = F.normalize(net(inputs), dim=1)
    bf16 = _run(build(8), low.float(), labels)  # the trainer upcasts autocast's embeddings for the loss
    for precision, outcome in (("float32", reference), ("bf16 autocast", bf16)):
        if outcome.error is not None:
            return CheckResult("bf16 autocast inputs", False, f"{precision}: {outcome.describe_error()}")
    assert reference.value is not None and bf16.value is not None
    difference = _rel(bf16.value, reference.value)
    if not _finite(bf16.value) or not _finite(bf16.grad) or difference > BF16_RTOL:
        return CheckResult(
            "bf16 autocast inputs", False, f"{float(bf16.value):.6g} vs float32 {float(reference.value):.6g}"
        )
    return CheckResult("bf16 autocast inputs", True, f"rel difference to float32 {difference:.1g}")


# -- two gloo processes vs one ---------------------------------------------------------------------------

_DDP_CLASSES, _DDP_PER_CLASS = 4, 4


def _ddp_step(name: str, params: Mapping[str, Any], dim: int, rank: int, world: int) -> dict[str, Tensor]:
    """One step of the trainer's DDP recipe: embed this rank's rows, all-gather with gradient, loss, backward."""
    from dmlbench.training.distributed import DistContext, gather_batch

    ctx = DistContext(rank=rank, world_size=world, local_rank=rank)
    labels = _pk_labels(_DDP_CLASSES, _DDP_PER_CLASS, seed=7) * 13 + 5
    torch.manual_seed(7)
    inputs = torch.randn(len(labels), IN_FEATURES)
    net = nn.Linear(IN_FEATURES, dim)
    loss = _builder(name, params, dim)(_DDP_CLASSES)
    share = len(labels) // world
    mine = slice(rank * share, (rank + 1) * share)
    embeddings, all_labels = gather_batch(F.normalize(net(inputs[mine]), dim=1), labels[mine], ctx)
    value = loss(embeddings, all_labels)
    value.backward()
    grads = {f"net.{n}": p.grad.detach().clone() for n, p in net.named_parameters() if p.grad is not None}
    if ctx.enabled:  # what DistributedDataParallel does with the network's gradients: average over ranks
        import torch.distributed as dist

        for grad in grads.values():
            dist.all_reduce(grad)
            grad /= world
    grads.update({f"loss.{n}": p.grad.detach().clone() for n, p in loss.named_parameters() if p.grad is not None})
    grads["value"] = value.detach().reshape(())
    return grads


def _ddp_worker(rank: int, init: str, out: str, names: list[str], params: list[dict[str, Any]], dim: int) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    try:
        results: dict[str, Any] = {}
        for name, kwargs in zip(names, params, strict=True):
            try:
                results[name] = _ddp_step(name, kwargs, dim, rank, WORLD)
            except Exception as err:  # reported by the parent, by name
                results[name] = f"{type(err).__name__}: {_one_line(str(err))}"
        torch.save(results, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()
    # A spawned child ends through the interpreter's full shutdown, and torch's static destructors there can abort
    # ("terminate called without an active exception") after a gloo all-gather with autograd, at random, once the
    # results are safely on disk. End the way a forked multiprocessing child always does: without that shutdown.
    os._exit(0)


def _check_ddp(names: Sequence[str], params: Sequence[Mapping[str, Any]], dim: int) -> dict[str, CheckResult]:
    """Spawned, not forked: each process re-loads every loss by its name (a file plugin by its path)."""
    import torch.multiprocessing as mp

    check = f"{WORLD}-process gloo = 1 process"
    with tempfile.TemporaryDirectory(prefix="dmlbench-check-loss-") as folder:
        out = str(Path(folder) / "grads")
        try:
            mp.start_processes(  # type: ignore[attr-defined, no-untyped-call]
                _ddp_worker,
                args=(f"file://{Path(folder) / 'rendezvous'}", out, list(names), [dict(p) for p in params], dim),
                nprocs=WORLD,
                join=True,
                start_method="spawn",
            )
        except Exception as err:
            return {name: CheckResult(check, False, f"the processes failed: {_one_line(str(err))}") for name in names}
        per_rank = [torch.load(f"{out}.{rank}", weights_only=True) for rank in range(WORLD)]
    results = {}
    for name, kwargs in zip(names, params, strict=True):
        failures = [r[name] for r in per_rank if isinstance(r[name], str)]
        if failures:
            results[name] = CheckResult(check, False, failures[0])
            continue
        try:
            single = _ddp_step(name, kwargs, dim, 0, 1)
        except Exception as err:
            results[name] = CheckResult(check, False, f"1 process: {type(err).__name__}: {_one_line(str(err))}")
            continue
        worst, key_worst = 0.0, ""
        for rank_result in per_rank:
            for key, expected in single.items():
                got = rank_result[name].get(key)
                difference = math.inf if got is None or got.shape != expected.shape else _rel(got, expected)
                if difference > worst:
                    worst, key_worst = difference, key
        passed = worst <= GRAD_RTOL
        detail = f"max rel difference {worst:.1g}" + ("" if passed else f" in {key_worst}")
        results[name] = CheckResult(check, passed, detail)
    return results


# -- entry points ----------------------------------------------------------------------------------------


def check_loss(
    names: Sequence[str],
    params: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    dim: int = DIM,
    ddp: bool = True,
    on_event: EventHandler | None = None,
) -> list[ContractReport]:
    """Run the contract on each loss `names` resolves to (any registry name); `params` per name."""
    params = params or {}
    kwargs = [dict(params.get(name, {})) for name in names]
    builders = []
    for name, given in zip(names, kwargs, strict=True):
        LOSSES.get(name)  # an unknown name fails before any check runs
        builders.append(_builder(name, given, dim))
    reports = [ContractReport(name) for name in names]
    emit(on_event, Event("start", "check-loss", total=len(names) + (1 if ddp else 0), unit="loss"))
    for report, build in zip(reports, builders, strict=True):
        report.checks += [
            _check_random_batches(build, dim),
            _check_order(build, dim),
            _check_label_values(build, dim),
            *(_check_edge(build, dim, what, labels) for what, labels in EDGE_BATCHES.items()),
            _check_float64(build, dim),
            _check_bf16(build, dim),
        ]
        emit(on_event, Event("advance", "check-loss", amount=1))
    if ddp:
        for report, result in zip(reports, _check_ddp(names, kwargs, dim).values(), strict=True):
            report.checks.append(result)
        emit(on_event, Event("advance", "check-loss", amount=1))
    emit(on_event, Event("finish", "check-loss"))
    return reports


@dataclass(frozen=True)
class Timing:
    """Median forward+backward milliseconds of one loss at each batch size (None: it failed there)."""

    name: str
    ms: dict[int, float | None]


def time_losses(
    names: Sequence[str],
    sizes: Sequence[int] = (128, 512),
    *,
    dim: int = 64,
    per_class: int = 4,
    repeats: int = 5,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    on_event: EventHandler | None = None,
) -> list[Timing]:
    """Forward+backward time of each loss on P x `per_class` batches of `sizes` rows, `dim`-d embeddings."""
    params = params or {}
    timings = []
    emit(on_event, Event("start", "timing", total=len(names), unit="loss"))
    for name in names:
        ms: dict[int, float | None] = {}
        for n in sizes:
            classes = max(1, n // per_class)
            labels = _pk_labels(classes, per_class, seed=n)
            embeddings = _embeddings(len(labels), dim, seed=n)
            loss = _builder(name, params.get(name, {}), dim)(classes)
            samples = []
            for _ in range(repeats + 1):  # the first call warms up (lazy init, allocator)
                started = time.perf_counter()
                outcome = _run(loss, embeddings, labels)
                samples.append(time.perf_counter() - started)
                if outcome.error is not None:
                    break
            ms[n] = None if outcome.error is not None else 1000 * statistics.median(samples[1:])
        timings.append(Timing(name, ms))
        emit(on_event, Event("advance", "timing", amount=1))
    emit(on_event, Event("finish", "timing"))
    return timings
