"""Perturbations of images in the wild: re-encoding, resizing, blur, noise, crops.

Images that reach an analyst have been re-encoded, resized and cropped; the field evaluates under
JPEG / blur / resize / noise (Wang et al. CVPR 2020, sidbench, AIGCDetectBenchmark). A spec names a
kind and its strengths, ``jpeg:90,75,50``; each strength is one ``Perturbation``:

- ``jpeg:Q`` / ``webp:Q``: encode at quality Q (1–100) with Pillow, decode again;
- ``resize:S``: down to S × the side (0 < S < 1, antialiased bilinear) and back up (bilinear), so
  that the image keeps the size the manifold and the attributors were built for;
- ``blur:σ``: Gaussian blur, σ in pixels (scipy.ndimage, reflected borders);
- ``noise:σ``: additive Gaussian noise, σ in 8-bit levels, rounded and clipped;
- ``crop:F``: a crop of F × each side (0 < F ≤ 1) at a random position, resized back.

Random parts (noise, crop position, which augmentation) are drawn from a generator seeded by the
perturbation, the image's index and a seed: the same image is perturbed the same way in every run,
whatever batch it is in.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from .errors import UsageError

#: kind → (valid range as text, check)
KINDS = {
    "jpeg": ("a quality 1–100", lambda v: 1 <= v <= 100 and v == int(v)),
    "webp": ("a quality 1–100", lambda v: 1 <= v <= 100 and v == int(v)),
    "resize": ("a scale 0 < S < 1", lambda v: 0 < v < 1),
    "blur": ("a σ > 0 in pixels", lambda v: v > 0),
    "noise": ("a σ > 0 in 8-bit levels", lambda v: v > 0),
    "crop": ("a fraction 0 < F ≤ 1", lambda v: 0 < v <= 1),
}


@dataclass(frozen=True)
class Perturbation:
    """One kind at one strength (see the module docstring)."""

    kind: str
    strength: float

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.strength:g}"

    def apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The perturbed copy of one uint8 H×W or H×W×3 image (same shape and dtype)."""
        k, v = self.kind, self.strength
        if k in ("jpeg", "webp"):
            return encode_roundtrip(image, "JPEG" if k == "jpeg" else "WEBP", int(v))
        if k == "resize":
            h, w = image.shape[:2]
            small = Image.fromarray(image).resize((max(1, round(w * v)), max(1, round(h * v))), Image.BILINEAR)
            return np.asarray(small.resize((w, h), Image.BILINEAR))
        if k == "blur":
            return gaussian_blur(image, v)
        if k == "noise":
            return np.clip(np.rint(image + rng.normal(0, v, image.shape)), 0, 255).astype(np.uint8)
        if k == "crop":
            h, w = image.shape[:2]
            ch, cw = max(1, round(h * v)), max(1, round(w * v))
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            return np.asarray(Image.fromarray(image[y:y + ch, x:x + cw]).resize((w, h), Image.BILINEAR))
        raise UsageError(f"unknown perturbation kind '{k}'")


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of one uint8 H×W(×3) image with std ``sigma`` pixels (per channel, reflected borders), rounded."""
    if sigma <= 0:
        return image.copy()
    sig = (sigma, sigma) + (0.0,) * (image.ndim - 2)
    out = gaussian_filter(image.astype(np.float32), sigma=sig, mode="reflect")
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode one uint8 H×W(×3) image as JPEG with Pillow at ``quality`` and decode it back."""
    return encode_roundtrip(image, "JPEG", quality)


def encode_roundtrip(image: np.ndarray, fmt: str, quality: int) -> np.ndarray:
    """One uint8 H×W(×3) image encoded as ``fmt`` (JPEG, WEBP) at ``quality`` with Pillow, decoded again."""
    im = Image.fromarray(image)
    gray = im.mode == "L"
    if gray and fmt == "WEBP":  # WebP stores colour only: encode the gray image as RGB, read it back as gray
        im = im.convert("RGB")
    buf = io.BytesIO()
    im.save(buf, fmt, quality=quality)
    out = Image.open(io.BytesIO(buf.getvalue()))
    return np.asarray(out.convert("L") if gray else out.convert("RGB"))


def parse_spec(spec: str) -> list[Perturbation]:
    """``"jpeg:90,75,50"`` → three perturbations; a clear error for a bad kind or strength."""
    kind, _, values = spec.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise UsageError(f"perturbation '{spec}': unknown kind '{kind}' (kinds: {', '.join(KINDS)}; e.g. jpeg:90,75)")
    if not values.strip():
        raise UsageError(f"perturbation '{spec}': give strengths after the colon, e.g. {kind}:{_example(kind)}")
    what, ok = KINDS[kind]
    out = []
    for text in values.split(","):
        try:
            v = float(text)
        except ValueError:
            raise UsageError(f"perturbation '{spec}': '{text.strip()}' is not a number") from None
        if not ok(v):
            raise UsageError(f"perturbation '{spec}': {kind} takes {what}, got {text.strip()}")
        out.append(Perturbation(kind, v))
    return out


def _example(kind: str) -> str:
    return {"jpeg": "90,75", "webp": "80", "resize": "0.5", "blur": "1", "noise": "2", "crop": "0.9"}[kind]


def parse_specs(specs: Sequence[str]) -> list[Perturbation]:
    """Every spec's perturbations, in order, duplicates dropped."""
    out: list[Perturbation] = []
    for spec in specs:
        out += [p for p in parse_spec(spec) if p not in out]
    return out


def _rng(p: Perturbation | None, index: int, seed: int) -> np.random.Generator:
    tag = zlib.crc32((p.name if p else "augment").encode())
    return np.random.default_rng([seed, tag, int(index)])


def perturb(images: np.ndarray, p: Perturbation, indices: Sequence[int] | np.ndarray | None = None,
            seed: int = 0) -> np.ndarray:
    """``p`` applied to every image; ``indices`` (the images' indices in their set) seed the random parts."""
    idx = np.arange(len(images)) if indices is None else np.asarray(indices)
    return np.stack([p.apply(im, _rng(p, i, seed)) for im, i in zip(images, idx, strict=True)]) if len(images) \
        else images.copy()


def augment(images: np.ndarray, choices: Sequence[Perturbation], indices: Sequence[int] | np.ndarray | None = None,
            seed: int = 0, prob: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Wang20-style training augmentation: each image, with probability ``prob``, gets one of
    ``choices`` (uniformly). Returns (the images, a mask of the ones changed)."""
    idx = np.arange(len(images)) if indices is None else np.asarray(indices)
    out, changed = images.copy(), np.zeros(len(images), bool)
    for j, i in enumerate(idx):
        rng = _rng(None, i, seed)
        if rng.random() < prob:
            p = choices[int(rng.integers(len(choices)))]
            out[j], changed[j] = p.apply(images[j], rng), True
    return out, changed
