"""Every registered loss at its defaults on one dataset, 3 seeds, with both baselines: the comparison table.

Runs the real `dmlbench bench` (skipping finished runs, so an interrupted benchmark continues where it
stopped) over the four paper losses and the six PML-backed ones, then prints the markdown report and,
per loss, the R@1 gain over the untrained network with the seeds' spread. This is the table of
docs/losses/index.md ("All ten losses on glyphs"); about 25 minutes on 2 CPU cores with 2 workers.

Usage: python benchmarks/bench_all_losses.py --runs-root R --data-root D [--dataset glyphs] [--seeds 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from dmlbench.losses.registry import LOSSES as REGISTRY

LOSSES = ",".join(REGISTRY.builtin_names())  # every built-in loss, from the registry (torch-free)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-root", type=Path, required=True)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--dataset", default="glyphs")
    parser.add_argument("--losses", default=LOSSES)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    # the table of docs/losses/index.md is at 10 epochs; glyphs' default (3, the demo's) is too short for the
    # proxy losses: at 3 epochs arcface and proxyanchor are still at the untrained network's level
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()

    command = [sys.executable, "-m", "dmlbench", "bench", "--datasets", args.dataset, "--losses", args.losses]
    command += [
        "--seeds",
        str(args.seeds),
        "--workers",
        str(args.workers),
        "--device",
        "cpu",
        "--epochs",
        str(args.epochs),
    ]
    command += ["--runs-root", str(args.runs_root), "--data-root", str(args.data_root), "--quiet"]
    report = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
    print(report)

    def recall_at_1(run: Path) -> float:
        return float(json.loads((run / "eval" / "test" / "metrics.json").read_text())["metrics"]["recall@1"])

    untrained = [recall_at_1(run) for run in sorted(args.runs_root.glob("baselines/*untrained*"))]
    if not untrained:
        sys.exit("no untrained baseline under the runs root")
    print(f"R@1 gain over the untrained network ({untrained[0]:.4f}), mean ± sd over seeds:")
    for loss in args.losses.split(","):
        folder_loss = loss.replace(":", "-")
        values = [recall_at_1(run) for run in sorted(args.runs_root.glob(f"{args.dataset}-{folder_loss}-*-seed*"))]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        gain = statistics.mean(values) - untrained[0]
        print(f"  {loss:16s} {statistics.mean(values):.4f} ± {spread:.4f}  ({gain:+.4f}, n={len(values)})")


if __name__ == "__main__":
    main()
