"""Durall20: the 1-D azimuthally integrated log spectrum, classified by an SVM or logistic regression.

Durall et al. show that up-convolutions make generated images fail to reproduce the spectral
distribution of real images at high frequencies, and that a 1-D summary of the spectrum suffices to
tell them apart. Their reference code: grayscale (OpenCV luma) → ``fft2`` → ``fftshift`` →
``20·log|F|`` → azimuthal average → min–max normalisation per image → SVM / logistic regression.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..estimator import store_params
from .base import FeatureBaseline, register_baseline, svm_classifier, to_gray
from .spectrum import azimuthal_average, centred_spectrum, radius_labels

#: added to the complex spectrum before the log, as in the reference code (keeps log finite)
EPS = 1e-8


def durall_spectrum(images: np.ndarray, max_radius: int | None = None, batch_size: int = 512) -> np.ndarray:
    """float64 N×(R+1): min–max normalised azimuthal average of ``20·log|fftshift(fft2(gray))|``.

    (Natural log as in the reference code; the factor 20 and the log base cancel in the min–max
    normalisation.) A profile that is constant up to rounding normalises to zeros.
    """
    gray = to_gray(images)
    out = []
    for i in range(0, len(gray), batch_size):
        mag = 20.0 * np.log(np.abs(centred_spectrum(gray[i:i + batch_size]) + EPS))
        out.append(azimuthal_average(mag, max_radius))
    if not out:
        r = int(radius_labels(gray.shape[1:]).max()) if max_radius is None else max_radius
        return np.zeros((0, r + 1))
    prof = np.concatenate(out)
    lo, hi = prof.min(axis=1, keepdims=True), prof.max(axis=1, keepdims=True)
    # a profile flat up to rounding (e.g. an all-black image) must not have its last-bit noise stretched to [0, 1]
    flat = hi - lo <= 1e-9 * np.maximum(np.maximum(np.abs(lo), np.abs(hi)), 1.0)
    return np.where(flat, 0.0, (prof - lo) / np.where(flat, 1.0, hi - lo))


@register_baseline("durall20")
class Durall20(FeatureBaseline):
    """1-D power spectrum (azimuthal average of the log magnitude) → SVM (default) or logistic regression.

    ``classifier``: ``"svm"`` (RBF or linear kernel, C chosen by internal CV) or ``"logreg"``.
    ``max_radius``: ``None`` keeps every ring up to the spectrum's corner (as the reference code).
    """

    paper = """R. Durall, M. Keuper, J. Keuper. Watch Your Up-Convolution: CNN Based Generative Deep Neural Networks
    Are Failing to Reproduce Spectral Distributions. CVPR 2020."""
    deviations = """
    - Rings are centred on the DC term at (H//2, W//2) and radii are rounded; the reference code centres at ((W−1)/2,
      (H−1)/2), half a pixel off DC for even sizes, and floors radii.
    - The spectrum is not resampled to a fixed number of bins: the profile has one value per integer radius (23 for
      32×32 images), so train and test images must share a size.
    - Features are standardised and the classifier's hyper-parameters (kernel, C) are chosen by 3-fold CV on the
      training set; the paper reports fixed settings.
    - Multi-class (one-vs-one SVM / multinomial logistic regression) instead of the paper's binary real-vs-fake.
    - SVM probabilities come from Platt scaling on cross-validated decision values and predict is their argmax.
    """

    def __init__(self, classifier: str = "svm", max_radius: int | None = None, seed: int = 0):
        store_params(self, locals())

    def features(self, images: np.ndarray) -> np.ndarray:
        return durall_spectrum(images, self.max_radius).astype(np.float32)

    def _classifier(self, n_train: int) -> tuple[BaseEstimator, dict[str, list[Any]], bool]:
        if self.classifier == "svm":
            return svm_classifier(self.seed)
        if self.classifier == "logreg":
            est = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
            return est, {"logisticregression__C": [0.01, 0.1, 1.0, 10.0]}, False
        raise ValueError(f"classifier must be 'svm' or 'logreg', got {self.classifier!r}")
