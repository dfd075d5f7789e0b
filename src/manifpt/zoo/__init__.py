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

from ..metrics import frechet_distance
from .base import FAMILY_MODULES, FamilyOptions, ZooModel, get_family, list_families, register_family
from .build import ZooMismatchError, ZooResult, build_zoo, resolve_real, write_grid
from .config import ModelSpec, QualityConfig, TrainDataConfig, ZooConfig, bundled_configs, load_config

__all__ = [
    "FAMILY_MODULES",
    "FamilyOptions",
    "ModelSpec",
    "QualityConfig",
    "TrainDataConfig",
    "ZooConfig",
    "ZooMismatchError",
    "ZooModel",
    "ZooResult",
    "build_zoo",
    "bundled_configs",
    "frechet_distance",
    "get_family",
    "list_families",
    "load_config",
    "register_family",
    "resolve_real",
    "write_grid",
]
