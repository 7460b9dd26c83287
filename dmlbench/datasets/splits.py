"""Class-disjoint splits of a training split: the held-out validation classes and K class folds.

One rule for everyone who needs it (training's validation, evaluation's `--split val`, tuning's folds),
so the classes a run validated on are the classes every later reader means.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dmlbench.errors import ConfigError


def held_out_classes(train_labels: Sequence[int] | np.ndarray, fraction: float, seed: int) -> list[int]:
    """A seeded draw of round(fraction x classes) (at least 2) training classes, sorted; [] for fraction 0."""
    if fraction <= 0:
        return []
    classes = np.unique(np.asarray(train_labels))
    n_val = max(2, round(fraction * len(classes)))
    if n_val >= len(classes):
        raise ConfigError(
            f"validation.val_classes={fraction} leaves no training classes ({len(classes)} in the train split)",
            hint="use a smaller --val-classes",
        )
    drawn = np.random.default_rng(seed).choice(classes, size=n_val, replace=False)
    return sorted(int(c) for c in drawn)


def class_folds(train_labels: Sequence[int] | np.ndarray, folds: int, seed: int) -> list[list[int]]:
    """`folds` class-disjoint groups of the training classes (shuffled by `seed`, sizes within one)."""
    classes = np.unique(np.asarray(train_labels))
    if folds < 1:
        raise ConfigError(f"--folds {folds} must be at least 1", hint="use --folds 1 (one held-out share) or more")
    if len(classes) // folds < 2:
        allowed = len(classes) // 2
        raise ConfigError(
            f"{folds} folds of {len(classes)} training classes leave a fold with fewer than 2 classes",
            hint=f"this dataset allows at most --folds {allowed}",
        )
    order = np.random.default_rng(seed).permutation(classes)
    return [sorted(int(c) for c in part) for part in np.array_split(order, folds)]
