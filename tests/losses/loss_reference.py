"""Slow, independent loop references of the four losses, written from the math in docs/losses/*.md.

Plain Python loops over pairs, triplets and candidates (numpy only for one candidate's row operations),
float64, one scikit-learn call per candidate clustering for the clustering scores. Shared by the tests and
by benchmarks/bench_losses.py (which times `cluster_loss` as the baseline). Not part of the dmlbench package.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from sklearn import metrics

Labels = Sequence[int] | np.ndarray

TIE_RTOL = 1e-11  # the documented tie rule: within TIE_RTOL * (max row sum of d + gamma) of the best


def distances(x: np.ndarray, *, squared: bool = False) -> np.ndarray:
    """Pairwise (squared) Euclidean distances from explicit differences, float64."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            d2 = float(np.sum((x[i] - x[j]) ** 2))
            out[i, j] = d2 if squared else math.sqrt(d2)
    return out


def _score_fn(margin_type: str, average: str) -> Callable[[Sequence[int], Sequence[int]], float]:
    if margin_type == "nmi":
        return lambda y, p: metrics.normalized_mutual_info_score(y, p, average_method=average)
    if margin_type == "ami":
        return lambda y, p: max(0.0, metrics.adjusted_mutual_info_score(y, p, average_method=average))
    if margin_type == "ari":
        return lambda y, p: max(0.0, metrics.adjusted_rand_score(y, p))
    if margin_type == "vmeasure":
        return lambda y, p: max(0.0, metrics.v_measure_score(y, p))
    raise ValueError(margin_type)


def _first_best(values: list[float], tol: float) -> int:
    """Position of the first value within `tol` of the maximum."""
    top = max(values)
    for position, value in enumerate(values):
        if value >= top - tol:
            return position
    raise AssertionError("unreachable")


def assign(dist: np.ndarray, medoids: Sequence[int]) -> list[int]:
    """Nearest medoid per point (np.argmin: first medoid on ties); medoids in their own clusters."""
    out = np.argmin(dist[list(medoids)], axis=0)
    for position, s in enumerate(medoids):
        out[s] = position
    return [int(v) for v in out]


def facility(dist: np.ndarray, medoids: Sequence[int]) -> float:
    """F(S) = -Σ_j min_{s∈S} d_sj."""
    return -float(np.sum(np.min(dist[list(medoids)], axis=0)))


def gt_score(dist: np.ndarray, labels: Labels) -> tuple[float, list[int]]:
    """F̃(y) = Σ_c max_{m∈c} -Σ_{i∈c} d_im, and the first best medoid of each class (sorted class values)."""
    total, medoids = 0.0, []
    for c in sorted(set(labels)):
        members = [i for i, y in enumerate(labels) if y == c]
        costs = [-sum(dist[i, m] for i in members) for m in members]
        best = max(costs)
        total += best
        medoids.append(members[costs.index(best)])
    return total, medoids


def cluster_inference(
    dist: np.ndarray,
    labels: Labels,
    gamma: float,
    *,
    pam: bool = True,
    margin_type: str = "nmi",
    average: str = "arithmetic",
) -> tuple[list[int], list[int]]:
    """Greedy loss-augmented inference, then up to 5 PAM sweeps, as losses.md §2.3. Returns (final, greedy)."""
    score = _score_fn(margin_type, average)
    labels = list(labels)
    n, k = dist.shape[0], len(set(labels))
    tol = TIE_RTOL * (float(np.max(np.sum(dist, axis=1))) + gamma)
    chosen: list[int] = []
    for _ in range(k):
        candidates = [c for c in range(n) if c not in chosen]
        values = []
        for c in candidates:
            trial = [*chosen, c]
            values.append(facility(dist, trial) + gamma * (1.0 - score(labels, assign(dist, trial))))
        chosen.append(candidates[_first_best(values, tol)])
    greedy = list(chosen)
    if pam:
        for _ in range(5):
            frozen = assign(dist, chosen)
            for j in range(k):
                members = [i for i in range(n) if frozen[i] == j]
                values = []
                for m in members:
                    trial = list(chosen)
                    trial[j] = m
                    within = -float(np.sum(dist[members, m]))
                    values.append(within + gamma * (1.0 - score(labels, assign(dist, trial))))
                chosen[j] = members[_first_best(values, tol)]
    return chosen, greedy


def cluster_loss(
    x: np.ndarray,
    labels: Labels,
    gamma: float,
    *,
    pam: bool = True,
    margin_type: str = "nmi",
    average: str = "arithmetic",
    dist: np.ndarray | None = None,
) -> tuple[float, list[int]]:
    """The clustering loss value and final medoids. `dist` overrides the distances computed from `x`."""
    d = distances(x) if dist is None else np.asarray(dist, dtype=np.float64)
    labels = [int(v) for v in labels]
    medoids, _ = cluster_inference(d, labels, gamma, pam=pam, margin_type=margin_type, average=average)
    q = _score_fn(margin_type, average)(labels, assign(d, medoids))
    gt, _ = gt_score(d, labels)
    return max(0.0, facility(d, medoids) + gamma * (1.0 - q) - gt), medoids


def triplet_semihard(x: np.ndarray, labels: Labels, margin: float = 1.0, *, squared: bool = True) -> float:
    """Semihard triplet loss, losses.md §3 (NaN-free: 0.0 when there is no positive pair)."""
    d = distances(x, squared=squared)
    n = len(labels)
    total, count = 0.0, 0
    for a in range(n):
        negatives = [j for j in range(n) if labels[j] != labels[a]]
        for p in range(n):
            if p == a or labels[p] != labels[a]:
                continue
            count += 1
            if not negatives:
                hardest = 0.0  # the reference's masked maximum over an empty set is the row minimum d_aa = 0
            else:
                farther = [d[a, j] for j in negatives if d[a, j] > d[a, p]]
                hardest = min(farther) if farther else max(d[a, j] for j in negatives)
            total += max(margin + d[a, p] - hardest, 0.0)
    return total / count if count else 0.0


def lifted_struct(x: np.ndarray, labels: Labels, margin: float = 1.0) -> float:
    """Lifted structured loss, losses.md §4, with log-sum-exp over negatives only."""
    d = distances(x)
    n = len(labels)
    total, count = 0.0, 0
    for i in range(n):
        for j in range(n):
            if i == j or labels[i] != labels[j]:
                continue
            count += 1
            terms = [margin - d[i, k] for k in range(n) if labels[k] != labels[i]]
            terms += [margin - d[j, m] for m in range(n) if labels[m] != labels[j]]
            if not terms:
                continue
            top = max(terms)
            value = top + math.log(sum(math.exp(t - top) for t in terms)) + d[i, j]
            total += max(value, 0.0) ** 2
    return total / (2.0 * count) if count else 0.0


def npairs(x: np.ndarray, labels: Labels, reg_lambda: float = 0.002) -> float:
    """N-pairs loss, losses.md §5, with each class's samples paired consecutively in batch order."""
    x = np.asarray(x, dtype=np.float64)
    members: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        members.setdefault(int(y), []).append(i)
    pairs = []
    for idx in members.values():
        for start in range(0, len(idx) - 1, 2):
            pairs.append((idx[start], idx[start + 1]))
    pairs.sort()
    if not pairs:
        return 0.0
    anchors = [x[a] for a, _ in pairs]
    positives = [x[p] for _, p in pairs]
    pair_labels = [labels[a] for a, _ in pairs]
    m = len(pairs)
    xent = 0.0
    for i in range(m):
        logits = [float(np.dot(anchors[i], positives[j])) for j in range(m)]
        top = max(logits)
        log_z = top + math.log(sum(math.exp(v - top) for v in logits))
        same = [j for j in range(m) if pair_labels[j] == pair_labels[i]]
        xent += -sum((logits[j] - log_z) / len(same) for j in same)
    reg = (
        0.25
        * reg_lambda
        * (sum(float(np.dot(a, a)) for a in anchors) / m + sum(float(np.dot(p, p)) for p in positives) / m)
    )
    return xent / m + reg
