"""Hand-computed cases for every metric, and NMI / F1 against independent references."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from dmlbench.errors import UnknownNameError, UsageError
from dmlbench.evaluation import METRICS, evaluate_embeddings, higher_is_better
from dmlbench.evaluation import metrics as M

# 1-D points with exact ties; items 0, 1, 2 coincide (duplicates), so "drop the first column" would
# drop a duplicate instead of the query. Neighbour orders (self removed by index, ties by index):
#   q0 (y0): 1 2 3 4 -> rel F T F F   R=1  first hit 2  r-prec 0    map@r 0
#   q1 (y1): 0 2 3 4 -> rel F F T T   R=2  first hit 3  r-prec 0    map@r 0
#   q2 (y0): 0 1 3 4 -> rel T F F F   R=1  first hit 1  r-prec 1    map@r 1
#   q3 (y1): 0 1 2 4 -> rel F T F T   R=2  first hit 2  r-prec 1/2  map@r (1/2)(1/2) = 1/4
#   q4 (y1): 3 0 1 2 -> rel T F T F   R=2  first hit 1  r-prec 1/2  map@r (1/2)(1/1) = 1/2
POINTS = np.array([[0.0], [0.0], [0.0], [1.0], [5.0]], dtype=np.float32)
LABELS = np.array([0, 1, 0, 1, 1])
EXPECTED = {
    "recall@1": 2 / 5,
    "recall@2": 4 / 5,
    "recall@3": 5 / 5,
    "recall@4": 5 / 5,
    "precision@1": 2 / 5,
    "r_precision": (0 + 0 + 1 + 0.5 + 0.5) / 5,
    "map@r": (0 + 0 + 1 + 0.25 + 0.5) / 5,
}
RETRIEVAL = ["recall", "precision@1", "r_precision", "map@r"]


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_hand_computed_ties_and_duplicates(backend: str) -> None:
    out = evaluate_embeddings(
        POINTS, LABELS, recall_k=(1, 2, 3, 4), metrics=RETRIEVAL, distance="euclidean", device="cpu", backend=backend
    )
    assert out.metrics == pytest.approx(EXPECTED)
    assert out.lone_queries == 0
    assert list(out.metrics) == list(EXPECTED)


def test_lone_queries_are_counted_and_left_out() -> None:
    # item 5 is the only member of class 2 and far from everything: the other rows keep their lists
    points = np.vstack([POINTS, [[100.0]]]).astype(np.float32)
    labels = np.append(LABELS, 2)
    out = evaluate_embeddings(
        points, labels, recall_k=(1, 2, 3, 4), metrics=RETRIEVAL, distance="euclidean", device="cpu"
    )
    assert out.lone_queries == 1
    assert out.metrics == pytest.approx(EXPECTED)  # not diluted by a zero for the lone query


def test_k_larger_than_gallery_is_an_error() -> None:
    with pytest.raises(UsageError, match="recall@5") as info:
        evaluate_embeddings(POINTS, LABELS, recall_k=(1, 5), distance="euclidean", device="cpu")
    assert info.value.hint and "K <= 4" in info.value.hint


def test_metric_functions_on_a_relevance_table() -> None:
    rel = np.array([[False, True, False, True], [True, True, False, False], [False, False, False, False]])
    n_rel = np.array([2, 3, 1])
    assert M.first_hit_rank(rel).tolist() == [2, 1, 0]
    assert M.recall_at_k(M.first_hit_rank(rel), 1).tolist() == [False, True, False]
    assert M.precision_at_1(rel).tolist() == [False, True, False]
    assert M.r_precision(rel, n_rel) == pytest.approx([1 / 2, 2 / 3, 0.0])
    # row 0: R=2, hit at rank 2 -> (1/2)(1/2); row 1: R=3, hits at 1,2 -> (1 + 1)/3
    assert M.map_at_r(rel, n_rel) == pytest.approx([0.25, 2 / 3, 0.0])
    assert np.isnan(M.map_at_r(rel, np.array([0, 3, 1]))[0])


def test_map_at_r_differs_from_r_precision_by_order() -> None:
    early = np.array([[True, False]])
    late = np.array([[False, True]])
    r = np.array([2])
    assert M.r_precision(early, r) == M.r_precision(late, r) == pytest.approx([0.5])
    assert M.map_at_r(early, r) == pytest.approx([0.5])
    assert M.map_at_r(late, r) == pytest.approx([0.25])


def _pairwise_f1_bruteforce(labels: np.ndarray, clusters: np.ndarray) -> float:
    tp = fp = fn = 0
    for i, j in combinations(range(len(labels)), 2):
        same_cluster, same_class = clusters[i] == clusters[j], labels[i] == labels[j]
        tp += same_cluster and same_class
        fp += same_cluster and not same_class
        fn += same_class and not same_cluster
    if tp == 0:
        return 0.0
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return 2 * precision * recall / (precision + recall)


def test_f1_hand_computed() -> None:
    labels = np.array([0, 0, 0, 1, 1])
    clusters = np.array([5, 5, 7, 7, 7])
    # same-cluster pairs: (0,1) (2,3) (2,4) (3,4) -> TP (0,1),(3,4) = 2 of 4; same-class pairs: 3 + 1 = 4
    assert M.pairwise_f1(labels, clusters) == pytest.approx(0.5)
    assert M.pairwise_f1(labels, clusters) == pytest.approx(_pairwise_f1_bruteforce(labels, clusters))


@pytest.mark.parametrize("seed", range(5))
def test_nmi_and_f1_match_references_on_random_partitions(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 7, size=120)
    clusters = rng.integers(0, 5, size=120) * 10 + 3  # arbitrary ids, not 0..k-1
    assert M.nmi(labels, clusters) == pytest.approx(normalized_mutual_info_score(labels, clusters), abs=1e-12)
    assert M.pairwise_f1(labels, clusters) == pytest.approx(_pairwise_f1_bruteforce(labels, clusters), abs=1e-12)


def test_nmi_edge_cases() -> None:
    same = np.array([0, 0, 1, 1, 2])
    assert M.nmi(same, same * 3 + 1) == pytest.approx(1.0)
    assert M.nmi(same, np.zeros(5)) == pytest.approx(normalized_mutual_info_score(same, np.zeros(5)))
    assert M.nmi(np.zeros(4), np.zeros(4)) == 1.0


def test_metric_table_and_unknown_names() -> None:
    assert set(METRICS) == {"recall", "precision@1", "r_precision", "map@r", "nmi", "f1"}
    assert all(info.higher_is_better for info in METRICS.values())
    assert higher_is_better("recall@100")
    with pytest.raises(UnknownNameError, match="nmj") as info:
        evaluate_embeddings(POINTS, LABELS, metrics=["nmj"], distance="euclidean", device="cpu")
    assert info.value.hint and "nmi" in info.value.hint


def test_metric_subset_and_recall_keys() -> None:
    out = evaluate_embeddings(
        POINTS, LABELS, recall_k=(1, 2), metrics=["recall@3", "map@r"], distance="euclidean"
    ).metrics
    assert list(out) == ["recall@3", "map@r"]
    assert out["recall@3"] == pytest.approx(1.0)


def test_an_empty_metric_selection_is_an_error() -> None:
    with pytest.raises(UsageError, match="no metric"):
        evaluate_embeddings(POINTS, LABELS, metrics=[], distance="euclidean")
