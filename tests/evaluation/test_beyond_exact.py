"""Evaluation beyond exact search: query samples with intervals, approximate indexes with measured
agreement and Recall@K bounds, class-stratified k-means samples, retrieval samples, and their records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import dmlbench.evaluation.core as core
from dmlbench.cli import app
from dmlbench.errors import UnknownNameError, UsageError
from dmlbench.evaluation import evaluate, evaluate_embeddings
from dmlbench.evaluation.ann import parse_index
from dmlbench.evaluation.describe import describe_approximation
from dmlbench.evaluation.sampling import bootstrap_mean_interval, stratified_sample, wilson_interval
from dmlbench.evaluation.search import knn
from dmlbench.paths import Places
from dmlbench.rundir import MetricsRecord, RunDir

RNG = np.random.default_rng(0)
N, C, D = 3000, 60, 16
Y = RNG.integers(0, C, N)
X = (RNG.normal(size=(C, D))[Y] + 1.1 * RNG.normal(size=(N, D))).astype(np.float32)
RETRIEVAL = ["recall", "precision@1", "r_precision", "map@r"]


def test_a_sample_of_every_query_equals_the_exact_evaluation() -> None:
    exact = evaluate_embeddings(X, Y, device="cpu", metrics=RETRIEVAL)
    whole = evaluate_embeddings(X, Y, device="cpu", metrics=RETRIEVAL, queries=N)
    assert whole.metrics == pytest.approx(exact.metrics)
    assert whole.approximation["queries"] == {
        "sampled": N,
        "of": N,
        "seed": 0,
        "intervals": core.SAMPLE_INTERVALS,
    }


def test_sampled_metrics_are_the_exact_per_query_values_of_the_sample() -> None:
    sampled = evaluate_embeddings(X, Y, device="cpu", metrics=["recall@1", "recall@4"], queries=400, seed=3)
    rows = core.query_sample(np.arange(N, dtype=np.int64), 400, 3)
    normalised = X / np.linalg.norm(X, axis=1, keepdims=True)
    _, idx, _ = knn(normalised, None, 4)
    hits = Y[idx[rows]] == Y[rows][:, None]
    assert sampled.metrics["recall@1"] == pytest.approx(hits[:, 0].mean())
    assert sampled.metrics["recall@4"] == pytest.approx(hits.any(axis=1).mean())
    for key, (low, high) in sampled.intervals.items():
        assert 0.0 <= low <= sampled.metrics[key] <= high <= 1.0


def test_every_sampled_metric_has_an_interval_inside_its_range() -> None:
    out = evaluate_embeddings(X, Y, device="cpu", metrics=RETRIEVAL, queries=200)
    assert set(out.intervals) == set(out.metrics)
    assert all(0.0 <= low <= out.metrics[k] <= high <= 1.0 for k, (low, high) in out.intervals.items())
    assert evaluate_embeddings(X, Y, device="cpu", metrics=RETRIEVAL).intervals == {}


def test_wilson_and_bootstrap_intervals() -> None:
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)  # the textbook value for 0 of 10
    low, high = wilson_interval(10, 10)
    assert high == 1.0 and low == pytest.approx(1 - 0.2775, abs=1e-4)
    low, high = wilson_interval(50, 100)
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    values = np.r_[np.zeros(5), np.ones(95)]
    low, high = bootstrap_mean_interval(values, seed=0)
    assert 0.0 <= low < 0.95 < high <= 1.0
    assert bootstrap_mean_interval(values, seed=0) == bootstrap_mean_interval(values, seed=0)


@pytest.mark.parametrize("spec", ["ivf:nlist=30,nprobe=1", "hnsw:m=4,ef_search=8"])
def test_approximate_index_is_labelled_and_its_bound_holds(spec: str) -> None:
    exact = evaluate_embeddings(X, Y, device="cpu", metrics=["recall", "precision@1"])
    approx = evaluate_embeddings(X, Y, device="cpu", metrics=["recall", "precision@1"], index=spec, agreement_queries=N)
    record = approx.approximation["index"]
    assert record["kind"] == spec.split(":")[0] and record["agreement_queries"] == N
    assert approx.backend.startswith(f"faiss-cpu {record['kind']}")
    for k in (1, 2, 4, 8):
        bound = record["recall_bounds"][f"recall@{k}"]
        delta = approx.metrics[f"recall@{k}"] - exact.metrics[f"recall@{k}"]
        # every query sampled: the sample's difference is the whole difference, and both bounds hold
        assert bound["sample_delta"] == pytest.approx(delta)
        assert abs(delta) <= bound["changed"] + 1e-12 <= bound["bound"] + 1e-12
        assert bound["bound"] == pytest.approx(1.0 - record["topk_agreement"][f"recall@{k}"])
    assert record["recall_bounds"]["recall@1"]["bound"] == pytest.approx(1.0 - record["top1_agreement"])
    assert (
        abs(approx.metrics["precision@1"] - exact.metrics["precision@1"])
        <= record["recall_bounds"]["recall@1"]["bound"] + 1e-12
    )
    assert any("approximate search: faiss" in line for line in describe_approximation(approx.approximation))


def test_a_lossy_index_actually_differs_so_the_bound_is_tested() -> None:
    approx = evaluate_embeddings(X, Y, device="cpu", metrics=["recall@1"], index="ivf:nlist=30,nprobe=1")
    assert approx.approximation["index"]["top1_agreement"] < 0.95


def test_index_specs_parse_and_bad_ones_are_usage_errors() -> None:
    assert parse_index("HNSW:m=8, ef-search=20").params == {"m": 8, "ef_search": 20}
    assert parse_index("flat").exact
    with pytest.raises(UnknownNameError, match="unknown --index kind 'ivx'"):
        parse_index("ivx")
    for bad in ("ivf:nprobe=0", "ivf:nprobe=a", "ivf:m=3", "hnsw:m", "flat:nlist=3"):
        with pytest.raises(UsageError):
            parse_index(bad)


def test_stratified_sample_keeps_every_class_share() -> None:
    labels = np.repeat(np.arange(4), [100, 200, 300, 400])
    picks = stratified_sample(labels, 100, seed=1)
    assert picks.size == np.unique(picks).size == 100
    counts = np.bincount(labels[picks], minlength=4)
    assert np.all(np.abs(counts - np.array([10, 20, 30, 40])) <= 1)


def test_cluster_sample_explicit_and_automatic(monkeypatch: pytest.MonkeyPatch) -> None:
    full = evaluate_embeddings(X, Y, device="cpu", metrics=["nmi"])
    assert "clustering" not in full.approximation
    sampled = evaluate_embeddings(X, Y, device="cpu", metrics=["nmi", "f1"], cluster_sample=1200)
    assert sampled.approximation["clustering"]["sample"] == 1200
    assert sampled.approximation["clustering"]["classes"] == C and not sampled.approximation["clustering"]["automatic"]
    assert 0.0 <= sampled.metrics["nmi"] <= 1.0
    assert "clustering" not in evaluate_embeddings(X, Y, device="cpu", metrics=["nmi"], cluster_sample=0).approximation
    # a cost limit this small samples by itself, and says so
    monkeypatch.setattr(core, "KMEANS_AUTO_BUDGET", 1e7)
    auto = evaluate_embeddings(X, Y, device="cpu", metrics=["nmi"])
    assert auto.approximation["clustering"]["automatic"] is True
    assert auto.approximation["clustering"]["sample"] < N


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"queries": 0}, "--queries must be >= 1"),
        ({"queries": N + 1}, "exceeds the 3000 queries"),
        ({"cluster_sample": N + 1, "metrics": ["nmi"]}, "exceeds the 3000 items"),
        ({"cluster_sample": 10, "metrics": ["nmi"]}, "fewer than 2 items per class"),
        ({"agreement_queries": 0}, "--agreement-queries must be >= 1"),
    ],
)
def test_bad_sizes_are_usage_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        evaluate_embeddings(X, Y, device="cpu", **options)
    assert info.value.hint


def test_retrieval_sample_lists_worst_queries_first() -> None:
    out = evaluate_embeddings(X, Y, device="cpu", metrics=["recall@1"], retrieval_sample=6, retrieval_k=4)
    sample = out.retrieval
    assert sample is not None and sample.kinds == ["worst"] * 3 + ["random"] * 3
    assert len(set(sample.queries)) == 6
    normalised = X / np.linalg.norm(X, axis=1, keepdims=True)
    _, idx, _ = knn(normalised, None, 4)
    wrong_all = (Y[idx] != Y[:, None]).sum(axis=1)
    for q, neighbours, correct in zip(sample.queries, sample.neighbours, sample.correct, strict=True):
        assert neighbours == idx[q].tolist()
        assert correct == (Y[idx[q]] == Y[q]).tolist()
    worst_wrong = [wrong_all[q] for q in sample.queries[:3]]
    assert min(worst_wrong) >= np.sort(wrong_all)[-3]


def test_cli_errors_are_one_line_with_a_hint(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", Y)
    base = ["evaluate-embeddings", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"), "--device", "cpu"]
    for extra, message in (
        (["--index", "annoy"], "error: unknown --index kind 'annoy'"),
        (["--queries", "5000"], "error: --queries 5000 exceeds"),
        (["--queries", "0"], "error: --queries must be >= 1"),
        (["--cluster-sample", "-1"], "error: --cluster-sample must be >= 0"),
    ):
        result = CliRunner().invoke(app, [*base, *extra])
        assert result.exit_code == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert lines[0].startswith(message) and lines[1].startswith("hint: ") and len(lines) == 2
        assert result.stdout == ""
    result = CliRunner().invoke(app, [*base, "--queries", "300", "--json", "--metrics", "recall"])
    assert result.exit_code == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["approximation"]["queries"]["sampled"] == 300 and set(body["intervals"]) == set(body["metrics"])


def test_old_metrics_files_load_and_merges_never_mix_approximations(tmp_path: Path) -> None:
    old = MetricsRecord.model_validate({"run_id": "r", "split": "test", "metrics": {"recall@1": 0.5}})
    assert old.intervals == {} and old.approximation == {}
    run = RunDir(tmp_path / "r")
    run.eval_dir("test").mkdir(parents=True)
    run.write_metrics(MetricsRecord(run_id="r", split="test", metrics={"nmi": 0.7}, distance="cosine"))
    sampled = MetricsRecord(
        run_id="r",
        split="test",
        metrics={"recall@1": 0.5},
        distance="cosine",
        intervals={"recall@1": [0.4, 0.6]},
        approximation={"queries": {"sampled": 10, "of": 100}},
    )
    written = run.write_metrics(sampled)
    assert written.metrics == {"recall@1": 0.5} and written.intervals == {"recall@1": [0.4, 0.6]}


def test_run_folder_writes_a_retrieval_sample_and_the_labels(tmp_path: Path, data_root: Path, make_run: Any) -> None:
    run_dir = make_run(tmp_path, data_root)
    result = evaluate(run_dir, places=Places.of(data_root), device="cpu", queries=200, cluster_sample=300)
    body = json.loads(result.path.read_text())
    assert body["approximation"]["queries"]["sampled"] == 200
    assert body["approximation"]["clustering"]["sample"] == 300
    assert set(body["intervals"]) == {k for k in body["metrics"] if k not in ("nmi", "f1")}
    retrieval = RunDir(run_dir).read_retrieval("test")
    assert retrieval is not None and retrieval.dataset == "digits" and retrieval.k == 8
    assert len(retrieval.queries) == 12 and retrieval.queries[0].kind == "worst"
    first = retrieval.queries[0]
    assert first.query.path.startswith("images.npy#") and len(first.neighbours) == 8
    assert all((n.label == first.query.label) == n.correct for n in first.neighbours)


def test_sampling_options_without_retrieval_metrics_are_refused() -> None:
    for options in ({"queries": 100}, {"index": "hnsw"}):
        with pytest.raises(UsageError, match="applies to retrieval metrics"):
            evaluate_embeddings(X, Y, device="cpu", metrics=["nmi"], **options)
