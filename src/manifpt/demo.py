"""`manifpt demo`: the main job, offline, on the embedded default data.

Interim version (until the generative-model zoo lands): real 32×32 photo patches form the manifold;
three stand-in "models" add known traces (an upsampling trace plus a checkerboard, stripes or an 8-px
grid) to *other* real patches.
It computes RGB and FREQ artifacts, prints their summaries and writes triplet figures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .datasets import photo_patches
from .figures import triplet_figure
from .pipeline import artifacts_for_folders


def plant(images: np.ndarray, kind: str, strength: float = 24.0) -> np.ndarray:
    """Add a generator-like periodic trace to uint8 images."""
    x = images.astype(np.float32)
    yy, xx = np.mgrid[0:x.shape[1], 0:x.shape[2]]
    pat = {"checker": np.where((yy + xx) % 2 == 0, 1.0, -1.0), "stripes": np.cos(2 * np.pi * xx / 4),
           "grid": np.where((yy % 8 == 0) | (xx % 8 == 0), 1.0, -0.2)}[kind]
    pat = pat[None, :, :, None] if x.ndim == 4 else pat[None]
    return np.clip(np.rint(x + strength * pat), 0, 255).astype(np.uint8)


def reupsample(images: np.ndarray, mode: str) -> np.ndarray:
    """Downsample ×2 (box) and upsample back with ``mode`` ('nearest' | 'bilinear'): an upsampling trace."""
    resample = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR}[mode]
    h, w = images.shape[1:3]
    return np.stack([np.asarray(Image.fromarray(im).resize((w // 2, h // 2), Image.Resampling.BOX)
                                .resize((w, h), resample)) for im in images])


#: stand-in "models": an upsampling trace plus an additive periodic trace, visible in RGB and FREQ
PLANTED_MODELS = {"nearest+checker": ("nearest", "checker"), "bilinear+stripes": ("bilinear", "stripes"),
                  "native+grid": (None, "grid")}


def planted_model(images: np.ndarray, name: str, strength: float = 16.0) -> np.ndarray:
    up, trace = PLANTED_MODELS[name]
    return plant(reupsample(images, up) if up else images, trace, strength)


def _write(folder: Path, images: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        p = folder / f"{i:05d}.png"
        if not p.exists():
            Image.fromarray(im).save(p)


def run_demo(out: str | Path, n_real: int = 2000, n_per_model: int = 200) -> list[Path]:
    out = Path(out)
    imgs = photo_patches(n_real + n_per_model * len(PLANTED_MODELS), 32, seed=0)
    _write(out / "data" / "real", imgs[:n_real])
    for j, name in enumerate(PLANTED_MODELS):
        lo = n_real + j * n_per_model
        _write(out / "data" / "generated" / name, planted_model(imgs[lo:lo + n_per_model], name))
    figs = []
    for space in ("rgb", "freq"):
        store = artifacts_for_folders(out / "data" / "real", out / "data" / "generated", space,
                                      out / f"artifacts-{space}")
        figs.append(triplet_figure(store.root, out / f"triplets-{space}.png", per_model=2))
    return figs
