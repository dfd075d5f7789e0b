"""manifpt's own generative-model zoo: the benchmark's generated images, built offline on a CPU.

The paper's GM-* datasets cannot be downloaded here, so manifpt trains small generative models on
real images that ship with installed packages (``manifpt.datasets``) and samples from them:
DCGAN-style GANs whose upsampling / loss / normalisation / last non-linearity are varied one at a
time, β-VAEs with the same upsampling choices, a Glow-style flow, a DDPM (diffusers) and a
PixelCNN, plus the same architectures trained on two disjoint real training sets.

    from manifpt.zoo import build_zoo, load_config
    build_zoo(load_config("quick"), "fmnist", "runs/zoo/gen")   # GEN/<model>/*.png + models.yaml

Families live one per module (``gan``, ``vae``, ``flow``, ``diffusion``, ``pixelcnn``) and register
themselves with ``@register_family``; ``FAMILY_MODULES`` in ``base`` lists them.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FAMILY_MODULES": "base", "FamilyOptions": "base", "ZooModel": "base", "get_family": "base",
    "list_families": "base", "register_family": "base", "ZooMismatchError": "build", "ZooResult": "build",
    "build_zoo": "build", "resolve_real": "build", "write_grid": "build", "ModelSpec": "config",
    "QualityConfig": "config", "TrainDataConfig": "config", "ZooConfig": "config", "bundled_configs": "config",
    "load_config": "config",
}
__all__ = [*sorted(_EXPORTS), "frechet_distance"]


def __getattr__(name: str) -> Any:
    """Import on first use, so ``manifpt --help`` does not load torch."""
    if name == "frechet_distance":
        from ..metrics import frechet_distance

        return frechet_distance
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'manifpt.zoo' has no attribute {name!r}")
