"""A frozen copy of the clustering loss's inference as it was before the sync-free CUDA work (commit 37c141e).

test_sync_free.py pins that the CPU path still gives bit-identical medoids, scores and losses. Do not edit:
it is an oracle, not an implementation (only the imports and this docstring differ from the original).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from dmlbench.losses._scores import CandidateStats, ScoreTables, lookup_sum

PAM_SWEEPS = 5
SPARSE_MIN_N = 192
TIE_RTOL = 1e-11


@dataclass(frozen=True)
class FacilityInference:
    medoids: Tensor
    greedy_medoids: Tensor
    gt_medoids: Tensor
    assignment: Tensor
    score: float


def _first_argmax(values: Tensor, tol: float) -> Tensor:
    """Index of the first entry within `tol` of the maximum of a 1-D tensor."""
    tied = values >= values.max() - tol
    return torch.argmax(tied.to(torch.uint8))


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
        self.sizes = torch.bincount(assignment, minlength=k)
        cells = assignment * n_classes + labels
        # each current (cluster, class) cell is keyed by its smallest member, so cells index an [N] vector
        rep = torch.full((k * n_classes,), n, dtype=torch.int64, device=device)
        rep = rep.scatter_reduce_(0, cells, torch.arange(n, device=device), reduce="amin")
        self.rep = rep[cells]
        self.cell_count = torch.bincount(self.rep, minlength=n)


def _dense_step_stats(
    captured: Tensor, state: _StepState, labels: Tensor, t: int, tables: ScoreTables
) -> CandidateStats:
    """Statistics of every g(S + [c]) from scatter-adds of the dense [N, N] capture mask."""
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


def _greedy(dist: Tensor, labels: Tensor, k: int, gamma: float, tables: ScoreTables, tol: float) -> Tensor:
    """Greedy loss-augmented inference: k steps, each scoring every candidate at once.

    Step t adds the candidate c maximising -Σ_j min(curmin_j, d_cj) + γ(1 - score(y, g(S + [c]))). The
    clustering of S + [c] differs from g(S) only by the points c captures (d_cj < curmin_j strictly, since
    ties stay with earlier medoids, plus c itself), so every candidate's contingency statistics follow from
    the current table and the [N, N] capture mask. Rows of already-chosen points are scored too and masked
    out of the argmax.
    """
    n = dist.shape[0]
    device = dist.device
    chosen = torch.zeros(k, dtype=torch.int64, device=device)
    # t = 0: one cluster holds everything whichever point is chosen, so only the facility term varies
    best = _first_argmax(-dist.sum(dim=1), tol)
    chosen[0] = best
    taken = torch.zeros(n, dtype=torch.bool, device=device)
    taken[best] = True
    curmin = dist[best]
    assignment = torch.zeros(n, dtype=torch.int64, device=device)
    eye = torch.eye(n, dtype=torch.bool, device=device)
    step_stats = _sparse_step_stats if n >= SPARSE_MIN_N else _dense_step_stats
    for t in range(1, k):
        newmin = torch.minimum(dist, curmin)
        captured = (dist < curmin) | eye
        stats = step_stats(captured, _StepState(assignment, labels, k, tables.n_classes), labels, t, tables)
        objective = (gamma * (1.0 - tables.margin(stats)) - newmin.sum(dim=1)).masked_fill_(taken, -math.inf)
        best = _first_argmax(objective, tol)
        chosen[t] = best
        taken[best] = True
        curmin = newmin[best]
        assignment = torch.where(captured[best], t, assignment)
    return chosen


def _swap_assignments(dist: Tensor, medoids: Tensor, candidates: Tensor, slots: Tensor) -> Tensor:
    """Clusterings [C, N] of `medoids` with medoids[slots[r]] replaced by candidates[r], for all r at once.

    A point's cluster is its first-nearest medoid; with one slot replaced it is either the candidate or the
    first-nearest medoid among the other slots, i.e. the best (or, if the best is the replaced slot, the
    second best) medoid of the unmodified list.
    """
    k = medoids.numel()
    to_medoids = dist.index_select(1, medoids)  # [N, k]; dist is symmetric
    first = to_medoids.argmin(dim=1)
    first_val = to_medoids.gather(1, first.unsqueeze(1)).squeeze(1)
    if k > 1:
        without_first = to_medoids.scatter(1, first.unsqueeze(1), math.inf)
        second = without_first.argmin(dim=1)
        second_val = without_first.gather(1, second.unsqueeze(1)).squeeze(1)
    else:
        second = torch.zeros_like(first)
        second_val = torch.full_like(first_val, math.inf)
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
) -> FacilityInference:
    """Loss-augmented inference of the clustering loss on a distance matrix, without gradient.

    `dist` [N, N] (N ≥ 1) is used in float64; `labels` are int64 class indices 0..k-1, all present.
    """
    with torch.no_grad():
        dist = dist.detach().to(torch.float64)
        dist = 0.5 * (dist + dist.T)
        n_classes = int(labels.max()) + 1
        tables = ScoreTables(labels, n_classes, margin_type, nmi_average)
        tol = TIE_RTOL * (float(dist.sum(dim=1).max()) + margin_multiplier)
        greedy = _greedy(dist, labels, n_classes, margin_multiplier, tables, tol)
        medoids = _pam(dist, greedy, margin_multiplier, tables, tol) if pam else greedy
        assignment = _assign(dist, medoids)
        score = float(tables.margin(tables.stats_of(assignment.unsqueeze(0), n_classes))[0])
        return FacilityInference(
            medoids=medoids,
            greedy_medoids=greedy,
            gt_medoids=_gt_medoids(dist, labels, n_classes),
            assignment=assignment,
            score=score,
        )


def loss_value(embeddings: Tensor, labels: Tensor, margin_multiplier: float, **options: object) -> Tensor:
    """`ClusteringLoss.compute` as it was: inference without gradient, then F(Ŝ) and F̃ on live distances."""
    from dmlbench.losses._distances import pairwise_distance

    dist = pairwise_distance(embeddings)
    found = facility_inference(dist, labels, margin_multiplier=margin_multiplier, **options)  # type: ignore[arg-type]
    n_classes = int(found.gt_medoids.numel())
    f_pred = -dist[found.medoids].amin(dim=0).sum()
    f_gt = -_within_class_sums(dist, labels, n_classes).amin(dim=1).sum()
    return torch.relu(f_pred + margin_multiplier * (1.0 - found.score) - f_gt)
