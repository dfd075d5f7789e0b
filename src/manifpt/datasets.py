"""Real images available offline: photo patches from scikit-image / scikit-learn bundled photos.

(Fashion-MNIST and the Debian photo collections are added by the benchmark builder.)
"""

from __future__ import annotations

import numpy as np

SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")


def bundled_photos() -> list[np.ndarray]:
    """Colour photographs shipped inside scikit-image and scikit-learn (no download)."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = [np.asarray(getattr(skimage.data, n)(), np.uint8) for n in SKIMAGE_PHOTOS]
    photos += [np.asarray(im, np.uint8) for im in load_sample_images().images]
    return photos


def photo_patches(n: int, size: int = 32, seed: int = 0, photos: list[np.ndarray] | None = None) -> np.ndarray:
    """``n`` random size×size RGB crops (uint8 N×size×size×3) of real photographs."""
    photos = bundled_photos() if photos is None else photos
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), np.uint8)
    which = rng.integers(len(photos), size=n)
    for j, p in enumerate(which):
        im = photos[p]
        y = rng.integers(0, im.shape[0] - size + 1)
        x = rng.integers(0, im.shape[1] - size + 1)
        out[j] = im[y:y + size, x:x + size]
    return out
