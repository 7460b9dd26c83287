"""Structured facility-location clustering loss (Song, Jegelka, Rathod, Murphy, CVPR 2017).

The semantics are those of TF 1.x `tf.contrib.losses.metric_learning.cluster_loss` (see
docs/losses/clustering.md); the loss-augmented inference is vectorised over candidates in torch.

On CUDA the inference runs sync-free (docs/gpu.md): the greedy steps and the PAM rounds have fixed shapes
and never read a device value on the host (PAM reads one flag per chunk of rounds), so the host queues
kernels without waiting for the device. On CPU the data-dependent steps (sparse greedy step, PAM's
nonzero/unique) are faster and stay, bit-identical to before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from dmlbench.losses._distances import pairwise_distance
from dmlbench.losses._scores import AVERAGES, MARGIN_TYPES, CandidateStats, ScoreTables, lookup_sum
from dmlbench.losses.base import (
    LossConfigError,
    LossInputError,
    MetricLoss,
    TrainingPosition,
    attached_zero,
    validate_inputs,
)

PAM_SWEEPS = 5
"""Number of PAM sweeps, hard-coded in the reference (`pam_max_iter`)."""

PAM_CHUNK = 4
"""Rounds of the sync-free PAM between two host reads (each round installs at most one changed medoid)."""

SPARSE_MIN_N = 192
"""From this batch size on, the greedy step groups the sparse captured pairs instead of dense [N, N] tables."""

TIE_RTOL = 1e-11
"""Objective values within TIE_RTOL × (max_i Σ_j d_ij + γ) of the maximum count as ties (first index wins).

Exact ties are structural in this problem (two members of a two-point class are interchangeable), and
without a tolerance the floating-point summation order, not the data, would pick between them. The scale
bounds every objective value, so the tolerance sits far above float64 rounding and far below real gaps.
"""


@dataclass(frozen=True)
class FacilityInference:
    """What the loss-augmented inference chose for one batch (all tensors int64 on the batch's device)."""

    medoids: Tensor
    """[k] final medoid indices Ŝ, in medoid-list order (cluster j is medoids[j])."""
    greedy_medoids: Tensor
    """[k] medoids after the greedy pass, before PAM."""
    gt_medoids: Tensor
    """[k] the ground-truth medoid of each class (class order 0..k-1 of the sorted label values)."""
    assignment: Tensor
    """[N] cluster of each point under `medoids` (nearest medoid, ties to the earlier medoid)."""
    score: float
    """The margin score of the final clustering against the labels (NMI etc., clipped at 0 except NMI)."""


def _first_argmax(values: Tensor, tol: float) -> Tensor:
    """Index of the first entry within `tol` of the maximum of a 1-D tensor."""
    tied = values >= values.max() - tol
    return torch.argmax(tied.to(torch.uint8))


def _row(matrix: Tensor, index: Tensor) -> Tensor:
    """Row `index` (a one-element device tensor) of `matrix`; `matrix[index]` would read it on the host."""
    return matrix.index_select(0, index.view(1)).squeeze(0)


def _counts(values: Tensor, size: int) -> Tensor:
    """bincount(values, minlength=size) for values < size; CUDA's bincount reads max(values) on the host."""
    return torch.zeros(size, dtype=torch.int64, device=values.device).scatter_add_(0, values, torch.ones_like(values))


def _assign(dist: Tensor, medoids: Tensor) -> Tensor:
    """Nearest medoid of every point (ties to the earlier medoid); each medoid forms its own cluster."""
    # dist is symmetric; reducing along contiguous rows of [N, k] is much faster than down columns of [k, N]
    assignment = dist.index_select(1, medoids).argmin(dim=1)
    assignment[medoids] = torch.arange(medoids.numel(), device=dist.device)
    return assignment


class _StepState:
    """The current greedy clustering g(S), |S| = t, and its contingency bookkeeping."""

    def __init__(self, assignment: Tensor, labels: Tensor, k: int, n_classes: int) -> None:
        n = assignment.shape[0]
        device = assignment.device
        self.assignment = assignment
        self.sizes = _counts(assignment, k)
        cells = assignment * n_classes + labels
        # each current (cluster, class) cell is keyed by its smallest member, so cells index an [N] vector
        rep = torch.full((k * n_classes,), n, dtype=torch.int64, device=device)
        rep = rep.scatter_reduce_(0, cells, torch.arange(n, device=device), reduce="amin")
        self.rep = rep[cells]
        self.cell_count = _counts(self.rep, n)


def _dense_step_stats(
    captured: Tensor, state: _StepState, labels: Tensor, t: int, tables: ScoreTables
) -> CandidateStats:
    """Statistics of every g(S + [c]) from scatter-adds of the dense [N, N] capture mask (fixed shapes)."""
    n = captured.shape[0]
    k = state.sizes.shape[0]
    device = captured.device
    int32 = torch.int32  # counts fit in int32, which halves the memory traffic
    mask = captured.to(int32)
    lost = torch.zeros(n, n, dtype=int32, device=device).scatter_add_(1, state.rep.expand(n, n), mask)
    remaining = state.cell_count.to(int32) - lost
    joined = torch.zeros(n, tables.n_classes, dtype=int32, device=device)
    joined.scatter_add_(1, labels.expand(n, n), mask)
    left = torch.zeros(n, k, dtype=int32, device=device).scatter_add_(1, state.assignment.expand(n, n), mask)
    sizes = state.sizes.to(int32) - left
    sizes[:, t] = mask.sum(dim=1)
    squares = tables.needs_squares
    return CandidateStats(
        cell_xlogx=lookup_sum(tables.xlogx, remaining) + lookup_sum(tables.xlogx, joined),
        cell_sq=lookup_sum(tables.square, remaining) + lookup_sum(tables.square, joined) if squares else None,
        size_xlogx=lookup_sum(tables.xlogx, sizes),
        size_sq=lookup_sum(tables.square, sizes) if squares else None,
        emi=lookup_sum(tables.emi, sizes) if tables.emi is not None else None,
        n_clusters=t + 1,
    )


def _grouped(keys: Tensor, width: int) -> tuple[Tensor, Tensor, Tensor]:
    """The distinct keys as (row, column) = divmod(key, width), with how often each occurs."""
    distinct, counts = torch.unique(keys, return_counts=True)
    return torch.div(distinct, width, rounding_mode="floor"), distinct % width, counts


def _sparse_step_stats(
    captured: Tensor, state: _StepState, labels: Tensor, t: int, tables: ScoreTables
) -> CandidateStats:
    """Statistics of every g(S + [c]) as the current ones plus the changes of the touched cells/clusters.

    About N²/t pairs are captured at step t; grouping them (one sort per table) beats dense tables for
    large N.
    """
    n = captured.shape[0]
    k = state.sizes.shape[0]
    device = captured.device
    cand, point = torch.nonzero(captured, as_tuple=True)
    lost_rows, lost_cells, lost = _grouped(cand * n + state.rep[point], n)
    join_rows, _, joined = _grouped(cand * tables.n_classes + labels[point], tables.n_classes)
    left_rows, left_clusters, left = _grouped(cand * k + state.assignment[point], k)
    before_cells = state.cell_count[lost_cells]
    before_sizes = state.sizes[left_clusters]
    new_size = torch.bincount(cand, minlength=n)

    def per_candidate(rows: Tensor, values: Tensor) -> Tensor:
        return torch.zeros(n, dtype=values.dtype, device=device).index_add_(0, rows, values)

    def cell_total(table: Tensor) -> Tensor:
        changed = table[before_cells - lost] - table[before_cells]
        return (
            table[state.cell_count].sum() + per_candidate(lost_rows, changed) + per_candidate(join_rows, table[joined])
        )

    def size_total(table: Tensor) -> Tensor:
        changed = table[before_sizes - left] - table[before_sizes]
        return table[state.sizes].sum() + per_candidate(left_rows, changed) + table[new_size]

    squares = tables.needs_squares
    return CandidateStats(
        cell_xlogx=cell_total(tables.xlogx),
        cell_sq=cell_total(tables.square) if squares else None,
        size_xlogx=size_total(tables.xlogx),
        size_sq=size_total(tables.square) if squares else None,
        emi=size_total(tables.emi) if tables.emi is not None else None,
        n_clusters=t + 1,
    )


def _greedy(
    dist: Tensor, labels: Tensor, k: int, gamma: float, tables: ScoreTables, tol: float, *, sync_free: bool = False
) -> Tensor:
    """Greedy loss-augmented inference: k steps, each scoring every candidate at once.

    Step t adds the candidate c maximising -Σ_j min(curmin_j, d_cj) + γ(1 - score(y, g(S + [c]))). The
    clustering of S + [c] differs from g(S) only by the points c captures (d_cj < curmin_j strictly, since
    ties stay with earlier medoids, plus c itself), so every candidate's contingency statistics follow from
    the current table and the [N, N] capture mask. Rows of already-chosen points are scored too and masked
    out of the argmax.

    No step reads a device value on the host (the chosen index stays a device tensor). With `sync_free`
    every step also has fixed shapes (the dense step); otherwise large batches take the sparse step, whose
    nonzero/unique have data-dependent sizes (a host read each on CUDA) but which is faster on CPU.
    """
    n = dist.shape[0]
    device = dist.device
    chosen = torch.zeros(k, dtype=torch.int64, device=device)
    # t = 0: one cluster holds everything whichever point is chosen, so only the facility term varies
    best = _first_argmax(-dist.sum(dim=1), tol)
    chosen[0] = best
    taken = torch.zeros(n, dtype=torch.bool, device=device).index_fill_(0, best.view(1), True)
    curmin = _row(dist, best)
    assignment = torch.zeros(n, dtype=torch.int64, device=device)
    eye = torch.eye(n, dtype=torch.bool, device=device)
    sparse = n >= SPARSE_MIN_N and not sync_free
    for t in range(1, k):
        newmin = torch.minimum(dist, curmin)
        captured = (dist < curmin) | eye
        step_stats = _sparse_step_stats if sparse else _dense_step_stats
        stats = step_stats(captured, _StepState(assignment, labels, k, tables.n_classes), labels, t, tables)
        objective = (gamma * (1.0 - tables.margin(stats)) - newmin.sum(dim=1)).masked_fill_(taken, -math.inf)
        best = _first_argmax(objective, tol)
        chosen[t] = best
        taken.index_fill_(0, best.view(1), True)
        curmin = _row(newmin, best)
        assignment = torch.where(_row(captured, best), t, assignment)
    return chosen


def _two_nearest_slots(dist: Tensor, medoids: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per point, the slot of its nearest and second-nearest medoid and their distances (second: inf if k = 1)."""
    to_medoids = dist.index_select(1, medoids)  # [N, k]; dist is symmetric
    first = to_medoids.argmin(dim=1)
    first_val = to_medoids.gather(1, first.unsqueeze(1)).squeeze(1)
    if medoids.numel() > 1:
        without_first = to_medoids.scatter(1, first.unsqueeze(1), math.inf)
        second = without_first.argmin(dim=1)
        second_val = without_first.gather(1, second.unsqueeze(1)).squeeze(1)
    else:
        second = torch.zeros_like(first)
        second_val = torch.full_like(first_val, math.inf)
    return first, first_val, second, second_val


def _swap_assignments(dist: Tensor, medoids: Tensor, candidates: Tensor, slots: Tensor) -> Tensor:
    """Clusterings [C, N] of `medoids` with medoids[slots[r]] replaced by candidates[r], for all r at once.

    A point's cluster is its first-nearest medoid; with one slot replaced it is either the candidate or the
    first-nearest medoid among the other slots, i.e. the best (or, if the best is the replaced slot, the
    second best) medoid of the unmodified list.
    """
    k = medoids.numel()
    first, first_val, second, second_val = _two_nearest_slots(dist, medoids)
    slot_col = slots.unsqueeze(1)
    replaced_is_first = first.unsqueeze(0) == slot_col
    other = torch.where(replaced_is_first, second.unsqueeze(0), first.unsqueeze(0))
    other_val = torch.where(replaced_is_first, second_val.unsqueeze(0), first_val.unsqueeze(0))
    cand_dist = dist[candidates]
    wins = (cand_dist < other_val) | ((cand_dist == other_val) & (slot_col < other))
    assignment = torch.where(wins, slot_col, other)
    rows_idx = torch.arange(candidates.numel(), device=dist.device)
    replaced = medoids[slots]
    # medoids own their clusters; the replaced medoid becomes an ordinary point
    replaced_cluster = assignment[rows_idx, replaced]
    assignment[:, medoids] = torch.arange(k, device=dist.device)
    assignment[rows_idx, replaced] = replaced_cluster
    assignment[rows_idx, candidates] = slots
    return assignment


def _pam(dist: Tensor, medoids: Tensor, gamma: float, tables: ScoreTables, tol: float) -> Tensor:
    """The reference's PAM refinement, exactly: up to 5 sweeps over the clusters in medoid order.

    Within a sweep the assignment is frozen and cluster j's medoid becomes the member m maximising
    -Σ_{i in cluster j} d_im + γ(1 - score(y, g(medoids with [j] := m))), installed unconditionally and in
    place. All clusters not yet visited are scored at once assuming no earlier swap; the first cluster whose
    medoid changes is installed and the clusters after it are re-scored, so the result equals the
    sequential one. A sweep that changes nothing is a fixed point, so later sweeps are skipped. A swap
    re-assigns only the points entering or leaving its cluster, so the candidates' contingency statistics
    are computed as changes to the current clustering's.
    """
    k = medoids.numel()
    n = dist.shape[0]
    device = dist.device
    medoids = medoids.clone()
    slot_ids = torch.arange(k, device=device)
    for _ in range(PAM_SWEEPS):
        frozen = _assign(dist, medoids)
        same_cluster = frozen.unsqueeze(0) == frozen.unsqueeze(1)
        within = -(dist * same_cluster).sum(dim=0)
        changed = False
        start = 0
        while start < k:
            candidates = torch.nonzero(frozen >= start).squeeze(1)
            slots = frozen[candidates]
            current = _assign(dist, medoids)
            stats = tables.stats_of_changes(current, _swap_assignments(dist, medoids, candidates, slots), k)
            objective = within[candidates] + gamma * (1.0 - tables.margin(stats))
            top = torch.full((k,), -math.inf, dtype=torch.float64, device=device)
            top = top.scatter_reduce_(0, slots, objective, reduce="amax")
            tied = objective >= top[slots] - tol
            first_tied = torch.where(tied, candidates, n)
            choice = torch.full((k,), n, dtype=torch.int64, device=device)
            choice = choice.scatter_reduce_(0, slots, first_tied, reduce="amin")
            moved = torch.nonzero((choice != medoids) & (slot_ids >= start))
            if moved.numel() == 0:
                break
            j = int(moved[0, 0])
            medoids[j] = choice[j]
            changed = True
            start = j + 1
        if not changed:
            break
    return medoids


def _pam_iteration(
    dist: Tensor,
    medoids: Tensor,
    frozen: Tensor,
    within: Tensor,
    start: Tensor,
    gamma: float,
    tables: ScoreTables,
    tol: float,
) -> tuple[Tensor, Tensor]:
    """One round of `_pam`'s inner loop with fixed shapes: install the first changed slot >= `start`.

    Every point is scored as the new medoid of its frozen cluster (rows of clusters before `start` are
    masked out), exactly as `_pam` scores its candidates, but the contingency statistics are built densely
    from the current clustering: replacing slot s by c moves the points c wins out of their clusters, and
    the points c does not win out of cluster s to their next-nearest medoid (a fixed vector). Cells are
    keyed by the smallest of the 2N (cluster, class) keys they can have, so every table is [N, 2N] at
    most. Updates `medoids` in place; returns (the next start, whether a medoid moved), both on device.
    """
    n = dist.shape[0]
    k = medoids.numel()
    device = dist.device
    labels, n_classes = tables.labels, tables.n_classes
    slot_ids = torch.arange(k, device=device)
    points = torch.arange(n, device=device)
    first, first_val, second, second_val = _two_nearest_slots(dist, medoids)
    base = first.scatter(0, medoids, slot_ids)  # the current clustering, == _assign(dist, medoids)
    slot_col = frozen.unsqueeze(1)  # [N, 1]: the slot each candidate row would take over
    # as in _swap_assignments: each point's cluster if the row's slot lost its medoid, and who wins it
    replaced_is_first = first.unsqueeze(0) == slot_col
    other = torch.where(replaced_is_first, second, first)
    other_val = torch.where(replaced_is_first, second_val, first_val)
    wins = (dist < other_val) | ((dist == other_val) & (slot_col < other))
    owner = torch.full((n,), -1, dtype=torch.int64, device=device).scatter_(0, medoids, slot_ids)
    other_medoid = (owner >= 0) & (owner != slot_col)  # the other slots' medoids keep their clusters
    wins = (wins & ~other_medoid) | torch.eye(n, dtype=torch.bool, device=device)
    in_slot = base.unsqueeze(0) == slot_col
    joins = (wins & ~in_slot).to(torch.int64)  # leave their cluster for the row's slot
    leaves = (in_slot & ~wins).to(torch.int64)  # leave the row's slot for their next-nearest medoid
    dest = torch.where(first == base, second, first)
    keys = torch.cat([base * n_classes + labels, dest * n_classes + labels])
    rep = torch.full((k * n_classes,), 2 * n, dtype=torch.int64, device=device)
    rep = rep.scatter_reduce_(0, keys, torch.arange(2 * n, device=device), reduce="amin")
    ids = rep[keys]
    id_base, id_dest = ids[:n], ids[n:]
    cluster_of_id = torch.zeros(2 * n, dtype=torch.int64, device=device).scatter_(
        0, ids, torch.div(keys, n_classes, rounding_mode="floor")
    )
    count = torch.zeros(2 * n, dtype=torch.int64, device=device).scatter_add_(0, id_base, torch.ones_like(id_base))
    cells = torch.where(cluster_of_id.unsqueeze(0) == slot_col, 0, count.unsqueeze(0))
    cells = cells.scatter_add(1, id_base.expand(n, n), -joins).scatter_add_(1, id_dest.expand(n, n), leaves)
    joined = torch.zeros(n, n_classes, dtype=torch.int64, device=device)
    joined.scatter_add_(1, labels.expand(n, n), wins.to(torch.int64))
    sizes = torch.where(slot_ids.unsqueeze(0) == slot_col, 0, _counts(base, k).unsqueeze(0))
    sizes = sizes.scatter_add(1, base.expand(n, n), -joins).scatter_add_(1, dest.expand(n, n), leaves)
    sizes.scatter_(1, slot_col, wins.sum(dim=1, keepdim=True))
    squares = tables.needs_squares
    stats = CandidateStats(
        cell_xlogx=lookup_sum(tables.xlogx, cells) + lookup_sum(tables.xlogx, joined),
        cell_sq=lookup_sum(tables.square, cells) + lookup_sum(tables.square, joined) if squares else None,
        size_xlogx=lookup_sum(tables.xlogx, sizes),
        size_sq=lookup_sum(tables.square, sizes) if squares else None,
        emi=lookup_sum(tables.emi, sizes) if tables.emi is not None else None,
        n_clusters=k,
    )
    objective = (within + gamma * (1.0 - tables.margin(stats))).masked_fill_(frozen < start, -math.inf)
    top = torch.full((k,), -math.inf, dtype=torch.float64, device=device)
    top = top.scatter_reduce_(0, frozen, objective, reduce="amax")
    first_tied = torch.where(objective >= top[frozen] - tol, points, n)
    choice = torch.full((k,), n, dtype=torch.int64, device=device).scatter_reduce_(0, frozen, first_tied, reduce="amin")
    moved = (choice != medoids) & (slot_ids >= start)
    any_moved = moved.any()
    j = moved.to(torch.uint8).argmax().view(1)
    medoids.scatter_(0, j, torch.where(any_moved, choice.gather(0, j), medoids.gather(0, j)))
    return torch.where(any_moved, j[0] + 1, k), any_moved


def _pam_sync_free(
    dist: Tensor, medoids: Tensor, gamma: float, tables: ScoreTables, tol: float, *, chunk: int | None = PAM_CHUNK
) -> Tensor:
    """`_pam` with fixed shapes and no host read inside its rounds (the CUDA path); the same medoids.

    A sweep repeats `_pam_iteration` (each installs the next changed medoid, as `_pam`'s inner loop) in
    chunks of `chunk` rounds and reads one flag from the device after each chunk: finished, and whether
    anything moved (a sweep that moves nothing is a fixed point: the remaining sweeps are skipped). With
    `chunk=None` every sweep runs k + 1 rounds, enough for any sweep, and nothing is read at all.
    """
    k = medoids.numel()
    medoids = medoids.clone()
    rounds = k + 1 if chunk is None else chunk
    flags = 0
    for _ in range(PAM_SWEEPS):
        frozen = _assign(dist, medoids)
        same_cluster = frozen.unsqueeze(0) == frozen.unsqueeze(1)
        within = -(dist * same_cluster).sum(dim=0)
        start = torch.zeros((), dtype=torch.int64, device=dist.device)
        changed = torch.zeros((), dtype=torch.bool, device=dist.device)
        while True:
            for _ in range(rounds):
                start, moved = _pam_iteration(dist, medoids, frozen, within, start, gamma, tables, tol)
                changed = changed | moved
            if chunk is None:
                break
            flags = int((start >= k).to(torch.int64) * 2 + changed.to(torch.int64))  # the chunk's one read
            if flags >= 2:
                break
        if chunk is not None and flags == 2:
            break
    return medoids


def _within_class_sums(dist: Tensor, labels: Tensor, n_classes: int) -> Tensor:
    """[k, N]: Σ of distances from each point to class c's members, +inf for points outside class c."""
    onehot = torch.nn.functional.one_hot(labels, n_classes).to(dist.dtype)
    return (onehot.T @ dist).masked_fill(onehot.T == 0, math.inf)


def _gt_medoids(dist: Tensor, labels: Tensor, n_classes: int) -> Tensor:
    """Per class, the first member minimising the sum of distances to the class's members."""
    return _within_class_sums(dist, labels, n_classes).argmin(dim=1)


def facility_inference(
    dist: Tensor,
    labels: Tensor,
    *,
    margin_multiplier: float,
    pam: bool = True,
    margin_type: str = "nmi",
    nmi_average: str = "arithmetic",
    sync_free: bool | None = None,
) -> FacilityInference:
    """Loss-augmented inference of the clustering loss on a distance matrix, without gradient.

    `dist` [N, N] (N ≥ 1) is used in float64; `labels` are int64 class indices 0..k-1, all present.
    `sync_free` (default: on for every device but the CPU) runs the greedy and PAM loops with fixed shapes
    and no host reads; the CPU default keeps the faster data-dependent steps. Both give the same medoids
    (up to the tie tolerance) and the CPU default is bit-identical to the implementation before this option.
    """
    with torch.no_grad():
        dist = dist.detach().to(torch.float64)
        dist = 0.5 * (dist + dist.T)
        n_classes = int(labels.max()) + 1
        tables = ScoreTables(labels, n_classes, margin_type, nmi_average)
        tol = TIE_RTOL * (float(dist.sum(dim=1).max()) + margin_multiplier)
        if sync_free is None:
            sync_free = dist.device.type != "cpu"
        greedy = _greedy(dist, labels, n_classes, margin_multiplier, tables, tol, sync_free=sync_free)
        refine = _pam_sync_free if sync_free else _pam
        medoids = refine(dist, greedy, margin_multiplier, tables, tol) if pam else greedy
        assignment = _assign(dist, medoids)
        score = float(tables.margin(tables.stats_of(assignment.unsqueeze(0), n_classes))[0])
        return FacilityInference(
            medoids=medoids,
            greedy_medoids=greedy,
            gt_medoids=_gt_medoids(dist, labels, n_classes),
            assignment=assignment,
            score=score,
        )


class ClusteringLoss(MetricLoss):
    """Facility-location structured clustering loss (Song et al., "Deep Metric Learning via Facility
    Location", CVPR 2017), with the reference's greedy + PAM loss-augmented inference.

    loss = max(0, F(Ŝ) + γ·(1 − score(y, g(Ŝ))) − F̃(y)) with F(S) = −Σ_j min_{s∈S} d_sj on Euclidean
    distances, Ŝ the loss-augmented medoids and F̃ the best in-class medoid per class. Only F(Ŝ) and F̃
    carry gradient. `margin_type` is "nmi" (default), "ami", "ari" or "vmeasure"; `nmi_average` is the
    NMI/AMI normalisation ("arithmetic" as scikit-learn ≥ 0.22, or "geometric" as in 2017).

    γ's schedule: the paper decays γ exponentially (rate 0.94) without saying how often, so γ at a
    position is γ0 x margin_decay^(step // margin_decay_every), or ^(finished epochs) when
    `margin_decay_every` is 0; the default rate 1 keeps γ fixed. The trainer calls `on_step` before every step; γ is
    computed from the position alone, so a resumed run continues exactly where it stopped.
    """

    expects_normalized = True

    def __init__(
        self,
        margin_multiplier: float = 30.0,
        pam: bool = True,
        margin_type: str = "nmi",
        nmi_average: str = "arithmetic",
        margin_decay: float = 1.0,
        margin_decay_every: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(margin_multiplier, bool) or not isinstance(margin_multiplier, (int, float)):
            raise LossConfigError("margin_multiplier must be a number", hint="e.g. margin_multiplier = 1.0")
        if not math.isfinite(margin_multiplier) or margin_multiplier < 0:
            raise LossConfigError(
                f"margin_multiplier must be finite and >= 0, got {margin_multiplier}",
                hint="the paper tunes γ on validation data; 30 is the default",
            )
        if not isinstance(pam, bool):
            raise LossConfigError("pam must be true or false", hint="pam = true enables the PAM refinement")
        if margin_type not in MARGIN_TYPES:
            raise LossConfigError(
                f"unknown margin_type {margin_type!r}", hint=f"choose one of: {', '.join(MARGIN_TYPES)}"
            )
        if nmi_average not in AVERAGES:
            raise LossConfigError(f"unknown nmi_average {nmi_average!r}", hint=f"choose one of: {', '.join(AVERAGES)}")
        if isinstance(margin_decay, bool) or not isinstance(margin_decay, (int, float)) or not 0 < margin_decay <= 1:
            raise LossConfigError(f"margin_decay must be in (0, 1], got {margin_decay!r}", hint="the paper's is 0.94")
        if isinstance(margin_decay_every, bool) or not isinstance(margin_decay_every, int) or margin_decay_every < 0:
            raise LossConfigError(
                f"margin_decay_every must be a whole number >= 0, got {margin_decay_every!r}",
                hint="steps between decays; 0 decays once per epoch",
            )
        self.margin_multiplier = self.initial_margin = float(margin_multiplier)
        self.margin_decay, self.margin_decay_every = float(margin_decay), margin_decay_every
        self.pam = pam
        self.margin_type = margin_type
        self.nmi_average = nmi_average

    def extra_repr(self) -> str:
        return (
            f"margin_multiplier={self.margin_multiplier}, pam={self.pam}, "
            f"margin_type={self.margin_type!r}, nmi_average={self.nmi_average!r}"
        )

    def on_step(self, position: TrainingPosition) -> None:
        """Set γ for the step about to run (the schedule in the class docstring)."""
        if self.margin_decay == 1.0:
            return
        every = self.margin_decay_every
        periods = position.step // every if every else position.epoch
        self.margin_multiplier = self.initial_margin * self.margin_decay**periods

    def _infer(self, dist: Tensor, labels: Tensor) -> FacilityInference:
        return facility_inference(
            dist,
            labels,
            margin_multiplier=self.margin_multiplier,
            pam=self.pam,
            margin_type=self.margin_type,
            nmi_average=self.nmi_average,
        )

    def inference(self, embeddings: Tensor, labels: Tensor) -> FacilityInference:
        """The medoids and score the loss would use for this batch (validated like `forward`; N ≥ 1)."""
        embeddings, labels = validate_inputs(embeddings, labels)
        if embeddings.shape[0] == 0:
            raise LossInputError("inference needs at least one embedding", hint="pass a non-empty batch")
        return self._infer(pairwise_distance(embeddings.detach()), labels)

    def compute(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """The loss of a validated batch: inference without gradient, then F(Ŝ) and F̃ on live distances."""
        if embeddings.shape[0] == 1:
            return attached_zero(embeddings)
        dist = pairwise_distance(embeddings)
        found = self._infer(dist, labels)
        n_classes = int(found.gt_medoids.numel())
        # amin splits the gradient between exact ties, like the reference's reduce_min
        f_pred = -dist[found.medoids].amin(dim=0).sum()
        f_gt = -_within_class_sums(dist, labels, n_classes).amin(dim=1).sum()
        margin = self.margin_multiplier * (1.0 - found.score)
        return torch.relu(f_pred + margin - f_gt)
