"""RGB and FREQ spaces: the two image-shaped spaces of the paper.

RGB is the identity on [0, 1]-scaled pixels (``ToTensor``, as in the authors' code), flattened in
C×H×W order. FREQ is, per channel, ``log(|fftshift(fft2(x))| + eps)`` with eps = 1e-12, exactly the
authors' helper: computed in float64 (log of tiny magnitudes amplifies float32 FFT noise), stored
as float32.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.fft

from .base import Space, register_space, to_chw


class _ImageShaped(Space):
    image_shaped = True

    def dim(self, image_shape: tuple[int, ...]) -> int:
        return int(np.prod(image_shape))


@register_space("rgb")
class RGBSpace(_ImageShaped):
    """Identity embedding: pixels / 255, flattened C×H×W."""

    def __init__(self, batch_size: int = 1024):
        self.batch_size = batch_size

    def settings(self) -> dict[str, Any]:
        return {"scale": "1/255", "layout": "CHW"}

    def embed_batch(self, images: np.ndarray) -> np.ndarray:
        x = to_chw(images).astype(np.float32) / np.float32(255.0)
        return x.reshape(len(x), -1)


def log_spectrum(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """``log(|fftshift(fft2(x))| + eps)`` over the last two axes, in float64."""
    spec = scipy.fft.fftshift(scipy.fft.fft2(np.asarray(x, np.float64), axes=(-2, -1)), axes=(-2, -1))
    return np.log(np.abs(spec) + eps)


@register_space("freq")
class FreqSpace(_ImageShaped):
    """Per-channel centred log-magnitude spectrum of [0, 1]-scaled pixels, flattened C×H×W."""

    positional = True

    def __init__(self, eps: float = 1e-12, batch_size: int = 512):
        self.eps = eps
        self.batch_size = batch_size

    def settings(self) -> dict[str, Any]:
        return {"scale": "1/255", "transform": "log(|fftshift(fft2)|+eps)", "eps": self.eps, "layout": "CHW"}

    def embed_batch(self, images: np.ndarray) -> np.ndarray:
        x = to_chw(images).astype(np.float64) / 255.0
        return log_spectrum(x, self.eps).astype(np.float32).reshape(len(x), -1)

    def view(self, chw: np.ndarray) -> np.ndarray:
        return log_spectrum(chw, self.eps).mean(0)
