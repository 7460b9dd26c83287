"""Exclusion groups (open-metric-learning's sequences): items of one group are never each other's neighbours,
in R and in the ranking, on the neighbour-list path and on the whole-row rank path, with or without a gallery."""

from __future__ import annotations

import numpy as np
import pytest

import dmlbench.evaluation.core as core
from dmlbench.errors import UsageError
from dmlbench.evaluation import evaluate_embeddings


def reference(q, ql, qg, g, gl, gg, ks, self_mode):  # type: ignore[no-untyped-def]
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    recalls = {k: [] for k in ks}
    rprec, maps = [], []
    for i in range(len(qn)):
        keep = gg != qg[i]
        if self_mode:
            keep[i] = False
        candidates = np.flatnonzero(keep)
        sims = gn[candidates] @ qn[i]
        order = candidates[np.lexsort((candidates, -sims))]
        relevant = gl[order] == ql[i]
        r = int(relevant.sum())
        if r == 0:
            continue
        for k in ks:
            recalls[k].append(bool(relevant[:k].any()))
        top = relevant[:r]
        rprec.append(top.mean())
        maps.append(float((np.cumsum(top) / np.arange(1, r + 1) * top).sum() / r))
    out = {f"recall@{k}": float(np.mean(recalls[k])) for k in ks}
    out.update({"r_precision": float(np.mean(rprec)), "map@r": float(np.mean(maps))})
    return out


@pytest.mark.parametrize("self_mode", [False, True])
@pytest.mark.parametrize("by_rank", [False, True])
def test_groups_match_brute_force(self_mode: bool, by_rank: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if by_rank:
        monkeypatch.setattr(core, "LARGE_R_MIN", 0)  # the whole-row path, which normally needs R > 2048
    rng = np.random.default_rng(1)
    q, ql, qg = rng.normal(size=(60, 8)), rng.integers(0, 5, 60), rng.integers(0, 12, 60)
    g, gl, gg = rng.normal(size=(70, 8)), rng.integers(0, 5, 70), rng.integers(0, 12, 70)
    ks = [1, 2, 4, 8]
    if self_mode:
        outcome = evaluate_embeddings(
            q, ql, recall_k=ks, metrics=["recall", "r_precision", "map@r"], device="cpu", query_groups=qg
        )
        expected = reference(q, ql, qg, q, ql, qg, ks, True)
    else:
        outcome = evaluate_embeddings(
            q,
            ql,
            recall_k=ks,
            metrics=["recall", "r_precision", "map@r"],
            device="cpu",
            gallery_embeddings=g,
            gallery_labels=gl,
            query_groups=qg,
            gallery_groups=gg,
        )
        expected = reference(q, ql, qg, g, gl, gg, ks, False)
    for key, value in expected.items():
        assert outcome.metrics[key] == pytest.approx(value, abs=1e-9), key
    plain = evaluate_embeddings(q, ql, recall_k=ks, metrics=["map@r"], device="cpu")
    assert plain.metrics["map@r"] != pytest.approx(expected["map@r"])  # the groups changed the answer


def test_groups_must_come_in_pairs_with_a_gallery() -> None:
    x, y = np.eye(4), np.array([0, 0, 1, 1])
    with pytest.raises(UsageError, match="one array for the queries and one for the gallery"):
        evaluate_embeddings(x, y, device="cpu", gallery_embeddings=x, gallery_labels=y, query_groups=[0, 1, 2, 3])
    with pytest.raises(UsageError, match="3 entries but there are 4"):
        evaluate_embeddings(x, y, device="cpu", query_groups=[0, 1, 2])
