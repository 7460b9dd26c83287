"""The one dotted-key flattening (configs in reports and comparisons)."""

from __future__ import annotations

from dmlbench.utils.dotted import flatten


def test_nested_tables_become_dotted_keys_and_leaves_stay() -> None:
    data = {"seed": 0, "optim": {"lr": 1e-3, "sched": {"warmup": 2}}, "loss": {"name": "triplet"}, "tags": [1]}
    assert flatten(data) == {
        "seed": 0,
        "optim.lr": 1e-3,
        "optim.sched.warmup": 2,
        "loss.name": "triplet",
        "tags": [1],
    }


def test_prefix_is_prepended_and_empty_tables_vanish() -> None:
    assert flatten({"a": {}, "b": 1}, "x.") == {"x.b": 1}
