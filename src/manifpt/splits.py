"""Stratified train/validation/test splits: per class, seeded, reproducible."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def stratified_split(labels: Sequence, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
                     seed: int = 0) -> dict[str, np.ndarray]:
    """Split indices per class into train/val/test with the given fractions (sorted index arrays).

    A part with fraction 0 stays empty. Every class with at least as many samples as there are
    non-empty parts gets at least one sample in each; the rest is rounded towards the training set.
    The CNN baselines carve their validation split out of the training data with ``(1 − f, f, 0)``.
    """
    if abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must sum to 1, got {fractions}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    parts_used = sum(f > 0 for f in fractions)
    for c in sorted(set(labels.tolist())):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n = len(idx)
        n_test = max(1, round(fractions[2] * n)) if fractions[2] > 0 and n >= parts_used else 0
        n_val = max(1, round(fractions[1] * n)) if fractions[1] > 0 and n >= parts_used else 0
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test:n_test + n_val])
        parts["train"].append(idx[n_test + n_val:])
    return {k: np.sort(np.concatenate(v)).astype(np.int64) for k, v in parts.items()}


def subsample(labels: Sequence | np.ndarray, max_per_class: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``max_per_class`` seeded picks per class (all indices when ``None`` or 0)."""
    labels = np.asarray(labels)
    if not max_per_class:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(labels == c))[:max_per_class] for c in sorted(set(labels.tolist()))]
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)
