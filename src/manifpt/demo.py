"""`manifpt demo` / `make demo`: the main job, offline, on the embedded default data.

Fashion-MNIST (Debian package) → the quick zoo of generative models (GANs with different
upsampling and loss, β-VAEs; trained here on the CPU) → ManiFPT artifacts in RGB and FREQ space →
attributors (2 seeds) → model-type accuracy next to two prior methods on the same splits →
``runs/demo/results.json`` and ``runs/demo/report.html``.

The module also keeps the small "planted trace" generators used by the tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


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


#: stand-in "models" for tests: an upsampling trace plus an additive periodic trace (RGB and FREQ)
PLANTED_MODELS = {"nearest+checker": ("nearest", "checker"), "bilinear+stripes": ("bilinear", "stripes"),
                  "native+grid": (None, "grid")}


def planted_model(images: np.ndarray, name: str, strength: float = 16.0) -> np.ndarray:
    up, trace = PLANTED_MODELS[name]
    return plant(reupsample(images, up) if up else images, trace, strength)


def run_demo(out: str | Path = "runs/demo", data: str | Path = "runs/data", config: str = "demo",
             show_progress: bool = True, retrain: bool = False) -> dict[str, Any]:
    """Build (or reuse) the quick zoo and attribute its models; returns results rows and timings.

    The quick zoo's trained networks ship with manifpt (``manifpt.zoo.pretrained``): the zoo is
    sampled from them unless ``retrain`` (or the real set differs from Debian's Fashion-MNIST)."""
    import time

    from .experiments import load_experiment_config
    from .experiments.context import Context

    t0 = time.perf_counter()
    cfg = load_experiment_config(config)
    ctx = Context(cfg, Path(data), Path(out), show_progress, retrain=retrain)
    name = next(iter(cfg.datasets))
    p = ctx.dataset(name)
    t_data = time.perf_counter() - t0
    rows, _ = ctx.compare(p, models=p.main_models, task=f"model-type:{name}", out=Path(out))
    return {"rows": rows, "models": p.main_models, "seconds_data": t_data,
            "seconds_total": time.perf_counter() - t0, "gen": p.gen}
