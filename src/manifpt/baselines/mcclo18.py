"""McClo18: exposure statistics and chromaticity histograms, classified by an SVM.

McCloskey & Albright argue from a GAN generator's architecture that its normalisation layers keep
outputs away from the extremes, so generated images have fewer saturated (255) and under-exposed
(0) pixels than camera images; and that its last layer mixes many feature maps into RGB with
overlapping, signed weights, unlike a camera's colour filters, which shows in the distribution of
chromaticities. Their saturation detector feeds the frequencies of saturated and under-exposed
pixels to a linear SVM; their colour detector classifies r–g chromaticity histograms. This baseline
concatenates both cues and lets the internal CV pick a linear or RBF SVM.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from ..estimator import store_params
from .base import FeatureBaseline, check_images, register_baseline, svm_classifier


def exposure_fractions(images: np.ndarray, levels: tuple[int, ...] = (0,)) -> np.ndarray:
    """float64 N×(2·L·C'): fractions of under-exposed (≤ t) and saturated (≥ 255 − t) pixels.

    Per ``t`` in ``levels`` (t = 0: exactly 0 and exactly 255, the paper's definition) and per cue
    channel: R, G, B and the intensity (R + G + B)/3 for RGB images (C' = 4; the intensity is
    saturated only where all three channels are, and compared exactly, in integers), or the single
    intensity channel for grayscale images (C' = 1). Column order: channel-major, then level, then
    (under, saturated).
    """
    images = check_images(images)
    x = images[..., None] if images.ndim == 3 else images
    if x.shape[-1] == 3:  # append 3·intensity = R + G + B as a 4th channel, compared against 3·threshold
        s = x.astype(np.int16).sum(axis=-1, keepdims=True)
        chans = [(x[..., c].astype(np.int16), 1) for c in range(3)] + [(s[..., 0], 3)]
    else:
        chans = [(x[..., 0].astype(np.int16), 1)]
    cols = []
    for ch, scale in chans:
        for t in levels:
            if not 0 <= t < 128:
                raise ValueError(f"exposure levels must be in [0, 128), got {t}")
            cols.append((ch <= scale * t).mean(axis=(1, 2)))
            cols.append((ch >= scale * (255 - t)).mean(axis=(1, 2)))
    return np.stack(cols, axis=1) if cols else np.zeros((len(images), 0))


def chromaticity_histogram(images: np.ndarray, bins: int = 8, min_sum: int = 24) -> np.ndarray:
    """float64 N×(bins·(bins+1)/2): normalised 2-D histogram of r = R/(R+G+B), g = G/(R+G+B).

    Only the bins of the reachable triangle r + g ≤ 1 are returned (row-major over r, then g).
    Pixels with R + G + B < ``min_sum`` are left out: near black the chromaticity is dominated by
    quantisation (1 gray level moves it by up to 1/3). An image with no counted pixel gives zeros.
    """
    images = check_images(images)
    if images.ndim != 4:
        raise ValueError("chromaticity needs RGB images")
    n = len(images)
    x = images.reshape(n, -1, 3).astype(np.int32)
    s = x.sum(axis=2)
    valid = s >= max(min_sum, 1)
    safe = np.where(valid, s, 1)
    ri = np.minimum(x[..., 0] * bins // safe, bins - 1)  # floor(r·bins), exact in integers
    gi = np.minimum(x[..., 1] * bins // safe, bins - 1)
    keys = (np.arange(n)[:, None] * bins * bins + ri * bins + gi)[valid]
    hist = np.bincount(keys, minlength=n * bins * bins).reshape(n, bins, bins).astype(np.float64)
    hist /= np.maximum(valid.sum(axis=1), 1)[:, None, None]
    i, j = np.nonzero(np.add.outer(np.arange(bins), np.arange(bins)) <= bins - 1)
    return hist[:, i, j]


@register_baseline("mcclo18")
class McClo18(FeatureBaseline):
    """Saturated / under-exposed pixel fractions (R, G, B, intensity) + r–g chromaticity histogram → SVM.

    ``levels``: exposure thresholds as distances from the extremes; ``(0,)`` is the paper (exactly 0
    and 255), e.g. ``(0, 2, 8)`` adds graded tails. ``color_bins``: chromaticity bins per axis (0
    turns the colour cue off). Grayscale images get only the intensity exposure cues.
    """

    paper = """S. McCloskey, M. Albright. Detecting GAN-generated Imagery using Color Cues. arXiv:1812.08247, 2018."""
    deviations = """
    - The paper's two detectors (saturation frequencies → linear SVM; r–g chromaticity histograms → their own
      classifier) are merged into one feature vector and one SVM.
    - Chromaticity: an 8×8 histogram over the reachable triangle r + g ≤ 1 (36 bins), ignoring pixels with R+G+B < 24;
      the paper's binning and dark-pixel handling were not reproduced from its code.
    - Intensity is (R+G+B)/3 (saturated only where all channels are 255); the paper's exact intensity definition was not
      reproduced from its code.
    - Features are standardised; SVM kernel (linear or RBF) and C are chosen by 3-fold CV on the training set.
    - Multi-class (one-vs-one SVM) instead of the paper's binary GAN-vs-camera detection; probabilities via Platt
      scaling on cross-validated decision values and predict is their argmax.
    """

    def __init__(self, levels: tuple[int, ...] = (0,), color_bins: int = 8, min_sum: int = 24, seed: int = 0):
        store_params(self, locals())

    def features(self, images: np.ndarray) -> np.ndarray:
        images = check_images(images)
        parts = [exposure_fractions(images, tuple(self.levels))]
        if images.ndim == 4 and self.color_bins:
            parts.append(chromaticity_histogram(images, self.color_bins, self.min_sum))
        return np.concatenate(parts, axis=1).astype(np.float32)

    def _classifier(self, n_train: int) -> tuple[BaseEstimator, dict[str, list[Any]], bool]:
        return svm_classifier(self.seed)
