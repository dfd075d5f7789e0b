"""Robustness: every method tested on perturbed copies of its test split, or trained on augmented images.

The real manifold is never perturbed: it stands for the clean data. A perturbed generated image is
embedded and projected again (ManiFPT: a new artifact against the same real set) or given to the
baseline as it is. Perturbed inputs are computed once per method and perturbation for the union of
the seeds' test splits (a perturbation is a function of the image and its index, ``perturb``), so
every seed reads the same perturbed image; ``evaluate`` classifies the rows of each test split.

``--augment`` follows Wang et al. (CVPR 2020): half of the training images, each with one of the
given perturbations. The artifact of an augmented image is computed once (not per epoch, which would
mean a nearest-neighbour search per epoch), the same augmented copies for every seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .perturb import Perturbation, augment, perturb
from .progress import STAGES, progress
from .splits import make_split

#: images → the method's inputs (ManiFPT: ``Manifold.artifacts``; a baseline: the images themselves)
ToInputs = Callable[[np.ndarray], Any]


def identity(images: np.ndarray) -> np.ndarray:
    return images


def test_items(labels: np.ndarray, seeds: Sequence[int], fractions: tuple[float, float, float],
               groups: Sequence[str] | None = None) -> np.ndarray:
    """Sorted indices that are in the test split of at least one seed (``splits.make_split``)."""
    return np.unique(np.concatenate([make_split(labels, fractions, s, groups)["test"] for s in seeds]))


def attach_perturbed(methods: Sequence[Any], to_inputs: Sequence[ToInputs], images: np.ndarray, idx: np.ndarray,
                     perturbations: Sequence[Perturbation], show_progress: bool = True) -> None:
    """Fill each method's ``perturbed[p.name]`` with (``idx``, its inputs of the perturbed images ``idx``)."""
    bar = progress(total=len(perturbations) * len(methods), desc="perturbed test sets", disable=not show_progress)
    with bar:
        for p in perturbations:
            with STAGES("perturb", len(idx)):
                imgs = perturb(images[idx], p, idx)
            for m, fn in zip(methods, to_inputs, strict=True):
                with STAGES("artifacts (perturbed)", len(idx)):
                    m.perturbed[p.name] = (idx, fn(imgs))
                bar.update(1)


def attach_augmented(methods: Sequence[Any], to_inputs: Sequence[ToInputs], images: np.ndarray,
                     choices: Sequence[Perturbation], seed: int = 0, prob: float = 0.5) -> float:
    """Give each method ``X_fit``: its inputs with the augmented images' rows replaced. Returns the
    fraction of images augmented. Methods are renamed ``<name>+aug``."""
    with STAGES("perturb", len(images)):
        aug, changed = augment(images, choices, seed=seed, prob=prob)
    rows = np.flatnonzero(changed)
    for m, fn in zip(methods, to_inputs, strict=True):
        X = np.array(m.X, copy=True)
        if len(rows):
            with STAGES("artifacts (augmented)", len(rows)):
                X[rows] = fn(aug[rows])
        m.X_fit = X
        m.name = f"{m.name}+aug"
    return float(changed.mean()) if len(changed) else 0.0


def prepare(method: Any, to_inputs: ToInputs, images: np.ndarray | None, tested: np.ndarray | None,
            augmentations: Sequence[Perturbation], perturbations: Sequence[Perturbation],
            show_progress: bool = True) -> Any:
    """``method`` with its augmented training inputs and perturbed test inputs (where asked for),
    computed while its manifold is at hand (``to_inputs``); returns it."""
    if augmentations:
        attach_augmented([method], [to_inputs], images, augmentations)
    if perturbations:
        attach_perturbed([method], [to_inputs], images, tested, perturbations, show_progress)
    return method
