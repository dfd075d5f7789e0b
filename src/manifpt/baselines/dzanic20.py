"""Dzanic20: the power-law decay of the high-frequency spectrum, classified by k-nearest neighbours.

Dzanic et al. observe that generated images decay differently at high spatial frequencies than
real ones (up-sampling either leaves too much or too little energy there). They normalise the
Fourier spectrum by its DC gain (so brightness and contrast scale cancel), reduce it to 1-D over
rings of equal frequency, fit a power law ``|F|(r) ≈ b · r^slope`` to the high-frequency part, and
classify images by the fitted decay parameters with a KNN.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..estimator import store_params
from .base import FeatureBaseline, register_baseline, to_gray
from .spectrum import azimuthal_average, centred_spectrum, power_law_fit, radius_labels

#: floor for DC gains and ring means, so flat (or black) images give finite features
TINY = 1e-12


def reduced_spectrum(gray: np.ndarray, rings: str = "inscribed", batch_size: int = 512) -> np.ndarray:
    """float64 N×(R+1): azimuthal mean of ``|F| / |F(0, 0)|`` for float N×H×W grayscale images.

    ``rings="inscribed"`` keeps radii 0..min(H, W)//2 (full rings, up to the Nyquist frequency along
    the shorter axis); ``"all"`` goes on to the corner, where rings are partial and only diagonal
    frequencies contribute.
    """
    gray = np.asarray(gray, np.float64)
    h, w = gray.shape[-2:]
    if rings == "inscribed":
        r = min(h, w) // 2
    elif rings == "all":
        r = int(radius_labels((h, w)).max())
    else:
        raise ValueError(f"rings must be 'inscribed' or 'all', got {rings!r}")
    out = [np.zeros((0, r + 1))]
    for i in range(0, len(gray), batch_size):
        mag = np.abs(centred_spectrum(gray[i:i + batch_size]))
        dc = np.maximum(mag[:, h // 2, w // 2], TINY)
        out.append(azimuthal_average(mag / dc[:, None, None], r))
    return np.concatenate(out)


def decay_features(profile: np.ndarray, fit_fraction: float = 0.25) -> np.ndarray:
    """float64 N×2: (slope, intercept) of the log–log line through the upper ``fit_fraction`` of radii.

    ``profile`` is N×(R+1) over radii 0..R; the fit uses radii r ≥ (1 − fit_fraction)·R (at least
    two, never DC). For |F| ∝ r^−α the slope is −α.
    """
    profile = np.asarray(profile, np.float64)
    r_max = profile.shape[1] - 1
    if not 0 < fit_fraction <= 1:
        raise ValueError(f"fit_fraction must be in (0, 1], got {fit_fraction}")
    r0 = max(1, min(int(np.ceil((1 - fit_fraction) * r_max)), r_max - 1))
    radii = np.arange(r0, r_max + 1)
    if len(radii) < 2:
        raise ValueError(f"a spectrum with {r_max + 1} rings is too short for a decay fit")
    slope, intercept = power_law_fit(np.maximum(profile[:, r0:], TINY), radii)
    return np.stack([slope, intercept], axis=1)


@register_baseline("dzanic20")
class Dzanic20(FeatureBaseline):
    """DC-normalised 1-D spectrum → power-law fit on the top 25 % of radii → (slope, intercept) → KNN."""

    paper = """T. Dzanic, K. Shah, F. Witherden. Fourier Spectrum Discrepancies in Deep Network Generated Images.
    NeurIPS 2020 (Advances in Neural Information Processing Systems 33, pp. 3022–3032)."""
    deviations = """
    - The reduced spectrum is the ring *mean* of |F|/|F(0,0)| (rounded integer radii), not a ring sum; a sum would
      multiply the profile by ≈2πr and so add ≈1 to every slope, which standardisation does not undo but which carries
      no information either.
    - The decay is fit by ordinary least squares in log–log coordinates (slope, intercept), over the upper 25 % of the
      radii up to the inscribed circle (min(H, W)//2); the paper's exact fitting range and parametrisation of the decay
      were not reproduced from its code.
    - Features are standardised before the KNN (slope and intercept have different scales) and k / weighting are chosen
      by 3-fold CV on the training set.
    - Multi-class KNN instead of the paper's binary real-vs-fake classification.
    - Grayscale is BT.601 luma of the uint8 RGB image.
    """

    def __init__(self, fit_fraction: float = 0.25, rings: str = "inscribed", seed: int = 0):
        store_params(self, locals())

    def features(self, images: np.ndarray) -> np.ndarray:
        return decay_features(reduced_spectrum(to_gray(images), self.rings), self.fit_fraction).astype(np.float32)

    def _classifier(self, n_train: int) -> tuple[BaseEstimator, dict[str, list[Any]], bool]:
        est = make_pipeline(StandardScaler(), KNeighborsClassifier())
        # k must not exceed a CV fold's training part (≈ 2/3 of the training set)
        ks = [k for k in (1, 5, 9, 15, 25) if k <= max(1, (2 * n_train) // 3)]
        grid = {"kneighborsclassifier__n_neighbors": ks,
                "kneighborsclassifier__weights": ["uniform", "distance"]}
        return est, grid, False
