"""Stratified train/validation/test splits: per class, seeded, reproducible; group-aware on request.

Conditional generators (upscalers, image-to-image, text-to-image with shared prompts) make the same
content in every class. A random split then puts one source photo's versions on both sides, and a
classifier can match content instead of attributing the generator. ``group_split`` keeps every
group (source photo, prompt, or — for a factor target — the model) on one side.
"""

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


def group_split(labels: Sequence, groups: Sequence, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
                seed: int = 0) -> dict[str, np.ndarray]:
    """Train/val/test with every group on one side, classes balanced as far as groups allow
    (sklearn's ``StratifiedGroupKFold``: the test part is one of round(1 / test fraction) folds, the
    validation part one fold of the rest, sized the same way)."""
    from sklearn.model_selection import StratifiedGroupKFold

    from .errors import UsageError

    if abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must sum to 1, got {fractions}")
    labels, groups = np.asarray(labels).astype(str), np.asarray(groups).astype(str)
    idx = np.arange(len(labels))
    parts: dict[str, np.ndarray] = {}
    for name, frac, rest in (("test", fractions[2], 1.0), ("val", fractions[1], 1.0 - fractions[2])):
        if frac <= 0:
            parts[name] = np.zeros(0, np.int64)
            continue
        n_folds = max(2, round(rest / frac))
        n_groups = len(set(groups[idx].tolist()))
        if n_groups < n_folds:
            raise UsageError(f"a group-aware split with a {name} fraction of {frac:g} needs at least {n_folds} "
                             f"groups; the images form {n_groups}")
        cv = StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed)
        _, held = next(cv.split(idx, labels[idx], groups[idx]))
        parts[name] = np.sort(idx[held])
        idx = np.setdiff1d(idx, parts[name])
    parts["train"] = idx
    return {k: parts[k].astype(np.int64) for k in ("train", "val", "test")}


def make_split(labels: Sequence, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2), seed: int = 0,
               groups: Sequence | None = None) -> dict[str, np.ndarray]:
    """``group_split`` when ``groups`` are given, else ``stratified_split``: every caller splits the same way."""
    return stratified_split(labels, fractions, seed) if groups is None else group_split(labels, groups, fractions,
                                                                                        seed)


def subsample(labels: Sequence | np.ndarray, max_per_class: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``max_per_class`` seeded picks per class (all indices when ``None`` or 0)."""
    labels = np.asarray(labels)
    if not max_per_class:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(labels == c))[:max_per_class] for c in sorted(set(labels.tolist()))]
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)
