"""Centred 2-D Fourier spectra and their azimuthal reduction to 1-D, shared by the frequency baselines.

Both Durall et al. (2020) and Dzanic et al. (2020) summarise an image's spectrum by averaging it
over rings of equal spatial frequency: generative up-sampling leaves its trace as a deviation of
this 1-D profile at high frequencies, and averaging over the ring discards orientation (and image
content) while keeping that trace. The ring of a spectrum sample is its Euclidean distance to the DC
term, rounded to the nearest integer.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft


def centred_spectrum(gray: np.ndarray) -> np.ndarray:
    """Complex ``fftshift(fft2(x))`` over the last two axes (float64); DC lands at (H//2, W//2)."""
    return scipy.fft.fftshift(scipy.fft.fft2(np.asarray(gray, np.float64), axes=(-2, -1)), axes=(-2, -1))


@lru_cache(maxsize=32)
def radius_labels(shape: tuple[int, int]) -> np.ndarray:
    """int64 H×W: each centred-spectrum sample's distance to DC at (H//2, W//2), rounded.

    After ``fftshift`` index ``H//2 + k`` holds frequency ``k`` (k = −H//2 … ⌈H/2⌉−1), so this is the
    rounded norm of the integer frequency vector, for even and odd sizes alike. Read-only (cached).
    """
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    lab = np.rint(np.hypot(yy - h // 2, xx - w // 2)).astype(np.int64)
    lab.setflags(write=False)
    return lab


def azimuthal_average(spec: np.ndarray, max_radius: int | None = None) -> np.ndarray:
    """Mean of ``spec`` (…×H×W, real) over each ring of integer radius 0..R → float64 …×(R+1).

    ``max_radius`` defaults to the largest radius in the array (the corner, ≈ √2·H/2 for square
    images); pass ``min(H, W) // 2`` to keep only the full rings inside the inscribed circle.
    Vectorised: one ``np.bincount`` over (image, ring) labels for the whole batch.
    """
    spec = np.asarray(spec, np.float64)
    if spec.ndim < 2:
        raise ValueError(f"expected …×H×W, got shape {spec.shape}")
    lead, (h, w) = spec.shape[:-2], spec.shape[-2:]
    lab = radius_labels((h, w))
    r_all = int(lab.max())
    r = r_all if max_radius is None else int(max_radius)
    if not 0 <= r <= r_all:
        raise ValueError(f"max_radius must be in [0, {r_all}] for {h}×{w} spectra, got {max_radius}")
    flat = spec.reshape(-1, h * w)
    n = len(flat)
    counts = np.bincount(lab.ravel(), minlength=r_all + 1)[: r + 1]
    if (counts == 0).any():  # cannot happen for H, W ≥ 2, kept as a guard against silent NaNs
        raise ValueError(f"empty ring(s) {np.flatnonzero(counts == 0).tolist()} for a {h}×{w} spectrum")
    keys = (np.arange(n)[:, None] * (r_all + 1) + lab.ravel()[None, :]).ravel()
    sums = np.bincount(keys, weights=flat.ravel(), minlength=n * (r_all + 1)).reshape(n, r_all + 1)[:, : r + 1]
    return (sums / counts).reshape(*lead, r + 1)


def power_law_fit(profile: np.ndarray, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares fit ``log profile = intercept + slope · log r`` per row; returns (slope, intercept).

    ``profile``: N×len(radii), strictly positive; ``radii``: positive. For |F| ∝ r^−α the slope is −α.
    """
    y = np.log(np.asarray(profile, np.float64))
    x = np.log(np.asarray(radii, np.float64))
    xc = x - x.mean()
    slope = (y - y.mean(axis=-1, keepdims=True)) @ xc / (xc @ xc)
    intercept = y.mean(axis=-1) - slope * x.mean()
    return slope, intercept
