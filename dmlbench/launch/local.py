"""`--workers N` on one machine: N spawned processes, each pinned to a GPU or to its share of the cores.

Processes are spawned, not forked: a forked child would inherit the parent's torch/CUDA and OpenMP
state, which deadlocks or fails. Each worker runs items one at a time; when a worker dies (SIGKILL,
out of memory) only the item it held fails, and a fresh worker takes its place for the rest.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from dmlbench.errors import DeviceError, UsageError
from dmlbench.utils.cpu import available_cores

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# How often the parent looks for a worker that died without answering.
_POLL_SECONDS = 0.2


class WorkerDiedError(RuntimeError):
    """The worker process running an item exited without a result (killed, crashed, out of memory)."""


def core_share(index: int, workers: int, cores: Sequence[int]) -> list[int]:
    """The cores worker `index` of `workers` is pinned to: its own contiguous slice of `cores`.

    Pinned, each worker's data loaders see only its share ("auto" data workers follow it), and two
    workers never fight over one core. More workers than cores share them round-robin.
    """
    if not cores:
        return []
    if workers >= len(cores):
        return [cores[index % len(cores)]]
    size = len(cores) // workers
    start = index * size
    return list(cores[start : start + size])


MAX_WORKERS = 1_024


def check_workers(workers: int) -> int:
    """`workers` when it is at least 1; a UsageError otherwise."""
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, not {workers}", hint="e.g. --workers 2 runs two at a time")
    if workers > MAX_WORKERS:
        raise UsageError(
            f"--workers {workers} is more than {MAX_WORKERS} processes", hint="one worker per GPU or per few cores"
        )
    return workers


def parse_gpus(spec: str | None, available: int) -> list[int] | None:
    """The GPU indices of `--gpus 0,1,2` (None: every visible GPU); None when there are no GPUs at all.

    Indices count the GPUs this process sees (after any CUDA_VISIBLE_DEVICES of its own). Naming a GPU
    that is not there, or naming one twice, is an error rather than a silent change of plan.
    """
    if spec is None:
        return list(range(available)) if available > 0 else None
    parts = [part.strip() for part in spec.split(",")]
    if not spec.strip() or any(not part for part in parts):
        raise UsageError(f"--gpus {spec!r} is not a list of GPU indices", hint="e.g. --gpus 0,1")
    chosen: list[int] = []
    for part in parts:
        if not part.isdigit():
            raise UsageError(f"--gpus: {part!r} is not a GPU index", hint="GPU indices are 0, 1, ...; e.g. --gpus 0,1")
        index = int(part)
        if index in chosen:
            raise UsageError(f"--gpus names GPU {index} twice", hint="list each GPU once; workers share them in turn")
        chosen.append(index)
    missing = [index for index in chosen if index >= available]
    if missing:
        seen = f"GPUs 0..{available - 1} are visible" if available else "no GPU is visible"
        raise DeviceError(
            f"--gpus names GPU {missing[0]}, but {seen}",
            hint="check `nvidia-smi`, or leave out --gpus to use every visible GPU (or none)",
        )
    return chosen


def worker_environment(
    index: int,
    workers: int,
    gpus: Sequence[int] | None,
    cpu_count: int,
    *,
    parent_visible: str | None = None,
) -> dict[str, str]:
    """The environment variables worker `index` of `workers` runs with.

    With GPUs, worker i sees only GPU `gpus[i % len(gpus)]` (as its cuda:0). `parent_visible` is the
    parent's own CUDA_VISIBLE_DEVICES, if any: the indices of `gpus` count those devices, so they are
    translated back to what the child must be told. Every worker gets cores / workers threads, so N
    workers never oversubscribe the CPU (with GPUs too: data loading and the loss run there).
    """
    if not 0 <= index < workers:
        raise ValueError(f"worker index {index} outside 0..{workers - 1}")
    threads = max(1, cpu_count // workers)
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if gpus:
        gpu = gpus[index % len(gpus)]
        visible = [part.strip() for part in parent_visible.split(",")] if parent_visible else None
        env["CUDA_VISIBLE_DEVICES"] = visible[gpu] if visible is not None and gpu < len(visible) else str(gpu)
    return env


def _threads_of(env: dict[str, str]) -> int:
    return int(env["OMP_NUM_THREADS"])


def _picklable(error: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # noqa: BLE001 - any failure to pickle means "send a description instead"
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error


def _worker_main(
    env: dict[str, str],
    fn: Callable[[Any], Any],
    inbox: Any,
    outbox: Any,
    slot: int,
    cores: Sequence[int] = (),
) -> None:
    """A worker process: pin itself (GPU, cores), then run items from `inbox` until it gets None.

    `outbox` is this worker's own pipe: `send` writes synchronously (no feeder thread), so a worker killed
    at any moment can tear only its own channel, never block or corrupt the others'.
    """
    # Written (never read) here, in the worker's own fresh interpreter, before torch initialises CUDA or its
    # thread pool: that is the only way to pin a process to a GPU for torch and faiss alike.
    os.environ.update(env)  # noqa: TID251
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)
    import torch

    torch.set_num_threads(_threads_of(env))
    while True:
        message = inbox.get()
        if message is None:
            return
        number, item = message
        try:
            result: Any = fn(item)
        except KeyboardInterrupt:
            outbox.send((number, False, RuntimeError("interrupted")))
            return
        except BaseException as error:  # noqa: BLE001 - reported to the parent, one item fails
            outbox.send((number, False, _picklable(error)))
            continue
        try:
            outbox.send((number, True, result))  # pickles first: an unpicklable result writes nothing
        except Exception as error:  # noqa: BLE001 - an unpicklable result is that item's failure
            outbox.send((number, False, _picklable(error)))


@dataclass(eq=False)
class _Slot:
    index: int
    env: dict[str, str]
    cores: list[int]
    process: Any = None
    inbox: Any = None
    results: Any = None  # the read end of this worker's own result pipe
    busy: int | None = None  # the item number it runs


def run_in_workers(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    workers: int,
    gpus: Sequence[int] | None,
    on_result: Callable[[T, R | BaseException], None] | None = None,
    cpu_count: int | None = None,
    parent_visible: str | None = None,
) -> list[R | BaseException]:
    """Run `fn(item)` for every item in `workers` spawned processes; results in the order of `items`.

    `fn` must be importable by name (a module-level function) and its items picklable. An item whose
    `fn` raises, or whose worker dies, gets the exception in its place (the others go on); `on_result`
    is called in this process as each item ends. Ctrl-C stops handing out items, lets the workers see
    the interrupt (training saves its checkpoint) and re-raises KeyboardInterrupt.
    """
    check_workers(workers)
    workers = min(workers, max(1, len(items)))  # never more processes (or smaller core shares) than items
    cores = cpu_count if cpu_count is not None else available_cores()
    results: list[Any] = [None] * len(items)
    finished = [False] * len(items)
    if not items:
        return []
    context = multiprocessing.get_context("spawn")
    mask = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    started = min(workers, len(items))
    slots = [
        _Slot(
            index,
            worker_environment(index, workers, gpus, cores, parent_visible=parent_visible),
            core_share(index, started, mask),
        )
        for index in range(started)
    ]
    pending = list(range(len(items)))
    pending.reverse()  # pop() from the end hands items out in order

    def start(slot: _Slot) -> None:
        slot.inbox = context.Queue()
        slot.results, sender = context.Pipe(duplex=False)
        slot.process = context.Process(
            target=_worker_main, args=(slot.env, fn, slot.inbox, sender, slot.index, slot.cores), daemon=True
        )
        slot.process.start()
        sender.close()  # the worker holds the only write end: its death closes the pipe
        log.debug("worker %d started (pid %d, %s)", slot.index, slot.process.pid, slot.env)

    def record(number: int, value: Any) -> None:
        results[number] = value
        finished[number] = True
        if on_result is not None:
            on_result(items[number], value)

    def died(slot: _Slot) -> None:
        code = slot.process.exitcode if slot.process is not None else None
        log.warning("worker %d died (exit code %s) running item %s", slot.index, code, slot.busy)
        lost = slot.busy
        slot.busy, slot.process, slot.results = None, None, None
        if lost is not None:
            record(lost, WorkerDiedError(f"worker process exited with code {code}"))

    try:
        while not all(finished):
            for slot in slots:
                if slot.busy is None and pending:
                    number = pending.pop()
                    if slot.process is None or not slot.process.is_alive():
                        start(slot)
                    slot.busy = number
                    slot.inbox.put((number, items[number]))
            busy = [slot for slot in slots if slot.busy is not None]
            ready = multiprocessing.connection.wait([slot.results for slot in busy], timeout=_POLL_SECONDS)
            for slot in busy:
                if slot.results in ready:
                    try:
                        number, ok, value = slot.results.recv()
                    except (EOFError, OSError):  # the worker died: its pipe closed without an answer
                        died(slot)
                        continue
                    slot.busy = None
                    record(number, value)
                elif slot.process is not None and not slot.process.is_alive() and not slot.results.poll():
                    died(slot)
    finally:
        for slot in slots:
            if slot.process is not None and slot.process.is_alive():
                slot.inbox.put(None)
        for slot in slots:
            if slot.process is not None:
                slot.process.join(timeout=30)
                if slot.process.is_alive():
                    slot.process.terminate()
                    slot.process.join(timeout=5)
    return results
