"""The markdown table the benchmark scripts print: one row per dict, floats rounded by size."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    header = list(rows[0])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        cells = [
            f"{v:.0f}" if isinstance(v, float) and v > 2 else f"{v:.2f}" if isinstance(v, float) else str(v)
            for v in row.values()
        ]
        print("| " + " | ".join(cells) + " |")
