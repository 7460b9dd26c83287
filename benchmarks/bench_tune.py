"""Measure what equal-budget tuning changes: each loss at its defaults vs. tuned with the same N trials.

For every loss: (a) train the default config on all training classes and evaluate on test; (b) tune it
(`dmlbench.tuning.tune`, the same trials/epochs/folds for every loss) and evaluate its final seeds on
test. Prints a markdown table (test R@1 and MAP@R at defaults and tuned, the validation MAP@R of the
best trial, pruned trials, wall time, the best parameters) and writes the numbers as JSON.

Usage: python benchmarks/bench_tune.py [--dataset digits] [--losses clustering,triplet,lifted,npairs]
       [--trials 4] [--epochs 2] [--folds 1] [--final-seeds 1] [--out tune.json] [--root /tmp/bench-tune]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from dmlbench.paths import Places


def default_run(loss: str, dataset: str, epochs: int, runs: Path, data: Path, device: str) -> dict[str, float]:
    """The loss's default config, all training classes, seed 0: the "untuned" row."""
    from dmlbench.config import load_config
    from dmlbench.training import train

    cfg = load_config(None, [], {"loss.name": loss, "dataset": dataset, "schedule.epochs": epochs})
    summary = train(cfg, runs / f"default-{loss}", places=Places.of(data, runs), device=device, force=True)
    return dict(summary.test_metrics or {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--losses", default="clustering,triplet,lifted,npairs")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--folds", type=int, default=1)
    parser.add_argument("--final-seeds", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--root", type=Path, default=None, help="work folder (default: a fresh temp dir)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from dmlbench.datasets import prepare
    from dmlbench.tuning import TuneOptions, tune

    root = args.root or Path(tempfile.mkdtemp(prefix="bench-tune-"))
    data, runs = root / "data", root / "runs"
    prepare(args.dataset, Places.of(data))
    rows: list[dict[str, Any]] = []
    for loss in args.losses.split(","):
        started = time.perf_counter()
        defaults = default_run(loss, args.dataset, args.epochs, runs, data, args.device)
        default_s = time.perf_counter() - started
        started = time.perf_counter()
        options = TuneOptions.build(
            loss=loss,
            dataset=args.dataset,
            trials=args.trials,
            folds=args.folds,
            epochs=args.epochs,
            final_seeds=args.final_seeds,
            places=Places.of(data, runs),
            device=args.device,
        )
        result = tune(options)
        tune_s = time.perf_counter() - started
        finals = [f.metrics for f in result.finals]
        row = {
            "loss": loss,
            "default_recall@1": defaults.get("recall@1"),
            "default_map@r": defaults.get("map@r"),
            "tuned_recall@1": statistics.fmean(f["recall@1"] for f in finals) if finals else None,
            "tuned_map@r": statistics.fmean(f["map@r"] for f in finals) if finals else None,
            "ensemble": result.ensemble.metrics if result.ensemble else None,
            "best_val": result.best_value,
            "complete": result.n_complete,
            "pruned": result.n_pruned,
            "best_params": result.best_params,
            "default_seconds": round(default_s, 1),
            "tune_seconds": round(tune_s, 1),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    def f(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    print(
        f"\n{args.dataset}, {args.trials} trials x {args.epochs} epochs, --folds {args.folds}, "
        f"{args.final_seeds} final seed(s), device {args.device}\n"
    )
    print(
        "| loss | R@1 default | R@1 tuned | R@1 ensemble | MAP@R default | MAP@R tuned | MAP@R ensemble "
        "| best val MAP@R | pruned | tune s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ens = r["ensemble"] or {}
        print(
            f"| {r['loss']} | {f(r['default_recall@1'])} | {f(r['tuned_recall@1'])} | {f(ens.get('recall@1'))} "
            f"| {f(r['default_map@r'])} | {f(r['tuned_map@r'])} | {f(ens.get('map@r'))} | {f(r['best_val'])} "
            f"| {r['pruned']}/{args.trials} | {r['tune_seconds']} |"
        )
    print()
    for r in rows:
        shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["best_params"].items())
        print(f"- {r['loss']}: {shown}")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
