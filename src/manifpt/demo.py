"""`manifpt demo`: the main job, offline, on the embedded default data.

Interim version (until the generative-model zoo lands): real 32×32 photo patches form the manifold;
three stand-in "models" add a known trace (checkerboard, stripes, 8-px grid) to *other* real patches.
It computes RGB and FREQ artifacts, prints their summaries and writes triplet figures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .datasets import photo_patches
from .figures import triplet_figure
from .pipeline import artifacts_for_folders

TRACES = ("checker", "stripes", "grid")


def plant(images: np.ndarray, kind: str, strength: float = 24.0) -> np.ndarray:
    """Add a generator-like periodic trace to uint8 images."""
    x = images.astype(np.float32)
    yy, xx = np.mgrid[0:x.shape[1], 0:x.shape[2]]
    pat = {"checker": np.where((yy + xx) % 2 == 0, 1.0, -1.0), "stripes": np.cos(2 * np.pi * xx / 4),
           "grid": np.where((yy % 8 == 0) | (xx % 8 == 0), 1.0, -0.2)}[kind]
    pat = pat[None, :, :, None] if x.ndim == 4 else pat[None]
    return np.clip(np.rint(x + strength * pat), 0, 255).astype(np.uint8)


def _write(folder: Path, images: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        p = folder / f"{i:05d}.png"
        if not p.exists():
            Image.fromarray(im).save(p)


def run_demo(out: str | Path, n_real: int = 2000, n_per_model: int = 200) -> list[Path]:
    out = Path(out)
    imgs = photo_patches(n_real + n_per_model * len(TRACES), 32, seed=0)
    _write(out / "data" / "real", imgs[:n_real])
    for j, kind in enumerate(TRACES):
        lo = n_real + j * n_per_model
        _write(out / "data" / "generated" / kind, plant(imgs[lo:lo + n_per_model], kind))
    figs = []
    for space in ("rgb", "freq"):
        store = artifacts_for_folders(out / "data" / "real", out / "data" / "generated", space,
                                      out / f"artifacts-{space}")
        figs.append(triplet_figure(store.root, out / f"triplets-{space}.png", per_model=2))
    return figs
