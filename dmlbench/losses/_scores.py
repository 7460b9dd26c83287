"""Clustering scores (NMI, AMI, ARI, V-measure) of many candidate clusterings at once, in float64 torch.

Every score is a function of a few statistics of the contingency table n_ij between the true classes
(sizes a_i) and a predicted clustering (sizes b_j), with f(x) = x·log(x):

- S_cells = Σ_ij f(n_ij) and S_clusters = Σ_j f(b_j) give MI = log N + (S_cells − Σ_i f(a_i) − S_clusters)/N
  and H(pred) = log N − S_clusters/N (NMI, AMI, V-measure);
- Q_cells = Σ_ij n_ij² and Q_clusters = Σ_j b_j² give the pair-confusion counts (ARI), exactly, in int64;
- the expected mutual information depends on the clustering only through its sizes:
  EMI = Σ_j E(b_j) with E(b) = Σ_i Σ_nij (term of scikit-learn's `expected_mutual_information`), so a
  lookup table E[0..N] built once per batch makes AMI cost one gather per candidate.

The special cases follow scikit-learn (≥ 0.22 defaults) exactly: one class and one cluster → 1.0 for NMI,
AMI and V-measure, a single cluster on one side only → 0.0, AMI 1.0 when both sides are all singletons,
ARI 1.0 when no pair disagrees, empty input → 1.0.
f(n) and n² come from lookup tables, so equal counts always contribute bit-identical terms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

MARGIN_TYPES = ("nmi", "ami", "ari", "vmeasure")
AVERAGES = ("arithmetic", "geometric")
_EPS64 = float(torch.finfo(torch.float64).eps)
_TINY = float(torch.finfo(torch.float64).tiny)


@dataclass(frozen=True)
class CandidateStats:
    """Contingency statistics of C candidate clusterings against the batch's classes."""

    cell_xlogx: Tensor  # [C] float64: Σ_ij f(n_ij)
    cell_sq: Tensor | None  # [C] int64: Σ_ij n_ij² (ARI only)
    size_xlogx: Tensor  # [C] float64: Σ_j f(b_j)
    size_sq: Tensor | None  # [C] int64: Σ_j b_j² (ARI only)
    emi: Tensor | None  # [C] float64: expected mutual information Σ_j E[b_j] (AMI only)
    n_clusters: Tensor | int  # [C] int64 number of non-empty clusters, or one count for all


def lookup_sum(table: Tensor, counts: Tensor) -> Tensor:
    """Row sums of table[counts] for a 2-D integer `counts` (index_select is the fastest gather on CPU)."""
    return table.index_select(0, counts.reshape(-1)).view(counts.shape).sum(dim=1)


def _emi_table(class_sizes: Tensor, n: int) -> Tensor:
    """E[b] for b = 0..n: the expected-MI contribution of one cluster of size b, summed over the classes.

    Term by term the formula of scikit-learn's `expected_mutual_information`; the sum over clusters is
    regrouped by cluster size, which changes only the floating-point summation order.
    """
    device = class_sizes.device
    table = torch.zeros(n + 1, dtype=torch.float64, device=device)
    if n == 0:
        return table
    big_n = float(n)
    distinct, multiplicity = torch.unique(class_sizes[class_sizes > 0], return_counts=True)
    b = torch.arange(n + 1, dtype=torch.float64, device=device).unsqueeze(1)  # [B, 1]
    log_b = torch.log(b.clamp_min(1.0))
    gln_b = torch.lgamma(b + 1.0)
    gln_nb = torch.lgamma(big_n - b + 1.0)
    gln_n = math.lgamma(big_n + 1.0)
    # one small [n + 1, a] block per distinct class size keeps memory at O(n²) whatever the size spread
    for size, count in zip(distinct.tolist(), multiplicity.tolist(), strict=True):
        a = float(size)
        nij = torch.arange(1, size + 1, dtype=torch.float64, device=device).unsqueeze(0)  # [1, a]
        valid = (nij >= torch.clamp(a - big_n + b, min=1.0)) & (nij <= b.clamp_max(a))
        term1 = nij / big_n
        term2 = (math.log(big_n) + torch.log(nij)) - math.log(a) - log_b
        gln = (
            math.lgamma(a + 1.0)
            + gln_b
            + math.lgamma(big_n - a + 1.0)
            + gln_nb
            - (torch.lgamma(nij + 1.0) + gln_n)
            - torch.lgamma((a - nij).clamp_min(0.0) + 1.0)
            - torch.lgamma((b - nij).clamp_min(0.0) + 1.0)
            - torch.lgamma((big_n - a - b + nij).clamp_min(0.0) + 1.0)
        )
        contribution = torch.where(valid, term1 * term2 * torch.exp(gln), torch.zeros((), dtype=torch.float64))
        table += float(count) * contribution.sum(dim=1)
    return table


class ScoreTables:
    """Per-batch constants and lookup tables for scoring candidate clusterings against `labels`.

    `labels` are int64 class indices 0..n_classes-1 (all present). Everything stays on their device.
    """

    def __init__(self, labels: Tensor, n_classes: int, margin_type: str = "nmi", average: str = "arithmetic") -> None:
        if margin_type not in MARGIN_TYPES:
            raise ValueError(f"unknown margin type {margin_type!r}; known: {', '.join(MARGIN_TYPES)}")
        if average not in AVERAGES:
            raise ValueError(f"unknown average {average!r}; known: {', '.join(AVERAGES)}")
        device = labels.device
        n = int(labels.shape[0])
        self.labels = labels
        self.n = n
        self.n_classes = n_classes
        self.margin_type = margin_type
        self.average = average
        counts = torch.arange(n + 1, dtype=torch.float64, device=device)
        self.xlogx = counts * torch.log(counts.clamp_min(1.0))
        self.square = torch.arange(n + 1, dtype=torch.int64, device=device) ** 2
        class_sizes = torch.bincount(labels, minlength=n_classes)
        self.class_xlogx = self.xlogx[class_sizes].sum()
        self.class_sq = self.square[class_sizes].sum()
        if n > 0 and n_classes > 1:
            p = class_sizes[class_sizes > 0].to(torch.float64)
            # scikit-learn's _entropy: log(a / b) as log(a) - log(b) for precision
            self.h_true = -((p / n) * (torch.log(p) - math.log(n))).sum()
        else:
            self.h_true = torch.zeros((), dtype=torch.float64, device=device)
        self.emi = _emi_table(class_sizes, n) if margin_type == "ami" else None

    @property
    def needs_squares(self) -> bool:
        """Whether the margin type uses Σ n_ij² (ARI)."""
        return self.margin_type == "ari"

    def stats_of(self, assignments: Tensor, n_slots: int) -> CandidateStats:
        """Statistics of C arbitrary clusterings `assignments` [C, N] with values in 0..n_slots-1.

        Cell counts come from one sort (`torch.unique`) of the flattened (candidate, cluster, class)
        index: O(C·N log(C·N)) time and O(C·N) memory, never a dense C × clusters × classes table.
        """
        n_cand = assignments.shape[0]
        device = assignments.device
        rows = torch.arange(n_cand, device=device).unsqueeze(1)
        keys = ((rows * n_slots + assignments) * self.n_classes + self.labels.unsqueeze(0)).reshape(-1)
        cells, counts = torch.unique(keys, return_counts=True)
        owner = torch.div(cells, n_slots * self.n_classes, rounding_mode="floor")
        cell_xlogx = torch.zeros(n_cand, dtype=torch.float64, device=device).index_add_(
            0, owner, self.xlogx.index_select(0, counts)
        )
        cell_sq = None
        if self.needs_squares:
            cell_sq = torch.zeros(n_cand, dtype=torch.int64, device=device).index_add_(
                0, owner, self.square.index_select(0, counts)
            )
        sizes = torch.zeros(n_cand, n_slots, dtype=torch.int64, device=device)
        sizes.scatter_add_(1, assignments, torch.ones_like(assignments))
        return CandidateStats(
            cell_xlogx=cell_xlogx,
            cell_sq=cell_sq,
            size_xlogx=lookup_sum(self.xlogx, sizes),
            size_sq=lookup_sum(self.square, sizes) if self.needs_squares else None,
            emi=lookup_sum(self.emi, sizes) if self.emi is not None else None,
            n_clusters=(sizes > 0).sum(dim=1),
        )

    def stats_of_changes(self, base: Tensor, assignments: Tensor, n_slots: int) -> CandidateStats:
        """Like `stats_of` for clusterings [C, N] that each differ from `base` [N] at only a few points.

        Every candidate's statistics are the base table's plus the changes of the cells and clusters its
        changed points leave and join, grouped with one sort of O(#changed points) keys. All n_slots
        clusters must be non-empty in every candidate (true for medoid clusterings).
        """
        n_cand = assignments.shape[0]
        device = assignments.device
        width = n_slots * self.n_classes
        cell_count = torch.bincount(base * self.n_classes + self.labels, minlength=width)
        sizes = torch.bincount(base, minlength=n_slots)
        rows, points = torch.nonzero(assignments != base.unsqueeze(0), as_tuple=True)
        to_cluster = assignments[rows, points]
        from_cluster = base[points]
        labels = self.labels[points]
        signs = torch.cat([-torch.ones_like(rows), torch.ones_like(rows)])

        def grouped(keys: Tensor, key_width: int) -> tuple[Tensor, Tensor, Tensor]:
            distinct, inverse = torch.unique(keys, return_inverse=True)
            delta = torch.zeros_like(distinct).index_add_(0, inverse, signs)
            return torch.div(distinct, key_width, rounding_mode="floor"), distinct % key_width, delta

        cell_rows, cells, cell_delta = grouped(
            torch.cat(
                [
                    rows * width + from_cluster * self.n_classes + labels,
                    rows * width + to_cluster * self.n_classes + labels,
                ]
            ),
            width,
        )
        size_rows, clusters, size_delta = grouped(
            torch.cat([rows * n_slots + from_cluster, rows * n_slots + to_cluster]), n_slots
        )
        cells_before, sizes_before = cell_count[cells], sizes[clusters]

        def total(table: Tensor, counts: Tensor, group_rows: Tensor, before: Tensor, delta: Tensor) -> Tensor:
            change = table[before + delta] - table[before]
            return table[counts].sum() + torch.zeros(n_cand, dtype=table.dtype, device=device).index_add_(
                0, group_rows, change
            )

        squares = self.needs_squares
        return CandidateStats(
            cell_xlogx=total(self.xlogx, cell_count, cell_rows, cells_before, cell_delta),
            cell_sq=total(self.square, cell_count, cell_rows, cells_before, cell_delta) if squares else None,
            size_xlogx=total(self.xlogx, sizes, size_rows, sizes_before, size_delta),
            size_sq=total(self.square, sizes, size_rows, sizes_before, size_delta) if squares else None,
            emi=total(self.emi, sizes, size_rows, sizes_before, size_delta) if self.emi is not None else None,
            n_clusters=n_slots,
        )

    def _average(self, h_pred: Tensor) -> Tensor:
        if self.average == "arithmetic":
            return (self.h_true + h_pred) / 2.0
        return torch.sqrt(self.h_true * h_pred)

    def score(self, stats: CandidateStats) -> Tensor:
        """The raw score (as scikit-learn returns it) of every candidate: float64 [C]."""
        n_cand = stats.cell_xlogx.shape[0]
        device = stats.cell_xlogx.device
        one = torch.ones(n_cand, dtype=torch.float64, device=device)
        if self.n == 0:
            return one
        if self.margin_type == "ari":
            return self._ari(stats, one)
        zero = torch.zeros_like(one)
        # NMI, AMI and V-measure: one class and one cluster is a perfect match (1.0); a single cluster on
        # exactly one side carries no information (0.0)
        if isinstance(stats.n_clusters, int):
            if stats.n_clusters == 1 or self.n_classes == 1:
                return one if stats.n_clusters == 1 and self.n_classes == 1 else zero
            return self._informative(stats, one, zero)
        one_cluster = stats.n_clusters == 1
        if self.n_classes == 1:
            return torch.where(one_cluster, one, zero)
        return torch.where(one_cluster, zero, self._informative(stats, one, zero))

    def _informative(self, stats: CandidateStats, one: Tensor, zero: Tensor) -> Tensor:
        """NMI / AMI / V-measure where both sides have at least two groups (other rows: don't care)."""
        n = self.n
        log_n = math.log(n)
        size_xlogx = stats.size_xlogx
        h_pred = log_n - size_xlogx / n
        mi = (log_n + (stats.cell_xlogx - self.class_xlogx - size_xlogx) / n).clamp_min(0.0)
        if self.margin_type == "nmi":
            # MI == 0 gives 0 whatever the normaliser, as in scikit-learn
            return mi / self._average(h_pred).clamp_min(_TINY)
        if self.margin_type == "vmeasure":
            homogeneity = mi / self.h_true
            completeness = mi / h_pred.clamp_min(_TINY)
            total = homogeneity + completeness
            return torch.where(total == 0.0, zero, 2.0 * homogeneity * completeness / total.clamp_min(_TINY))
        assert stats.emi is not None
        emi = stats.emi
        denominator = self._average(h_pred) - emi
        denominator = torch.where(denominator < 0, denominator.clamp_max(-_EPS64), denominator.clamp_min(_EPS64))
        numerator = mi - emi
        numerator = torch.where(numerator < 0, numerator.clamp_max(-_EPS64), numerator.clamp_min(_EPS64))
        # Both labellings all singletons: MI = EMI = H exactly, so AMI is 0/0 and its computed value is pure
        # rounding noise; scikit-learn's rounding happens to give 1.0 (a perfect match), which we return.
        ami = numerator / denominator
        if isinstance(stats.n_clusters, int):
            return one if stats.n_clusters == n == self.n_classes else ami
        return torch.where((stats.n_clusters == n) & (self.n_classes == n), one, ami)

    def _ari(self, stats: CandidateStats, one: Tensor) -> Tensor:
        assert stats.cell_sq is not None and stats.size_sq is not None
        n = self.n
        sum_sq = stats.cell_sq
        tp = sum_sq - n
        fp = stats.size_sq - sum_sq
        fn = self.class_sq - sum_sq
        tn = n * n - fp - fn - sum_sq
        # exact int64 products, as scikit-learn computes them with Python ints (fine for N < 50 000)
        numerator = 2.0 * (tp * tn - fn * fp).to(torch.float64)
        denominator = ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)).to(torch.float64)
        ari = numerator / torch.where(denominator == 0, one, denominator)
        return torch.where((fn == 0) & (fp == 0), one, ari)

    def margin(self, stats: CandidateStats) -> Tensor:
        """The score used in the structured margin 1 − score: NMI as is, AMI/ARI/V-measure clipped at 0."""
        score = self.score(stats)
        return score if self.margin_type == "nmi" else score.clamp_min(0.0)


def clustering_score(
    labels_true: Tensor, labels_pred: Tensor, margin_type: str = "nmi", average: str = "arithmetic"
) -> float:
    """scikit-learn's NMI / AMI / ARI / V-measure of two labellings (any integer values), computed in torch.

    `average` is the NMI/AMI normalisation ("arithmetic", scikit-learn's default, or "geometric").
    """
    if labels_true.shape != labels_pred.shape or labels_true.ndim != 1:
        raise ValueError("labellings must be 1-D tensors of the same length")
    _, true_idx = torch.unique(labels_true, return_inverse=True)
    pred_values, pred_idx = torch.unique(labels_pred, return_inverse=True)
    n_classes = int(true_idx.max()) + 1 if true_idx.numel() else 0
    tables = ScoreTables(true_idx.to(torch.int64), n_classes, margin_type, average)
    stats = tables.stats_of(pred_idx.to(torch.int64).unsqueeze(0), max(int(pred_values.numel()), 1))
    return float(tables.score(stats)[0])
