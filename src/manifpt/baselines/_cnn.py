"""``CNNBaseline``: the base class of the learned baselines (their shared parameters, training,
probabilities and features), and their image transforms.

Training is ``manifpt.nn.train.fit_classifier`` at a constant learning rate, early-stopped on the
loss of a stratified validation split carved out of the training data only (the best epoch's
weights restored). Networks take the *raw* uint8 images and a ``transform`` that turns one
mini-batch into their input on the device (a 3×256×256 co-occurrence stack is 768 KiB an image:
too large to hold for a whole set).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ..nn.train import History, TrainConfig, Transform, apply, fit_classifier, layer_inputs
from ..runtime import default_device, to_float_tensor
from ..spaces.cnn import IMAGENET_MEAN, IMAGENET_STD
from ..splits import stratified_split
from .base import Baseline, check_images

GRAY_MEAN = sum(IMAGENET_MEAN) / 3
GRAY_STD = sum(IMAGENET_STD) / 3


def image_tensor(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 N×H×W(×3) → float32 N×C×H×W, ImageNet-normalised (grayscale: the channel-averaged statistics)."""
    x = to_float_tensor(check_images(batch), device)
    if x.shape[1] == 3:
        m = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        s = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        return (x - m) / s
    return (x - GRAY_MEAN) / GRAY_STD


def predict_proba(model: nn.Module, X: np.ndarray, *, transform: Transform, batch_size: int) -> np.ndarray:
    """Softmax probabilities float64 N×K of ``model`` (eval mode, on its device)."""
    return apply(model, X, lambda m, x: torch.softmax(m(x).double(), 1), transform=transform, batch_size=batch_size)


def chw_shape(images: np.ndarray) -> tuple[int, int, int]:
    """(C, H, W) of a uint8 N×H×W(×3) batch."""
    images = check_images(images)
    return (1, *images.shape[1:3]) if images.ndim == 3 else (3, *images.shape[1:3])


class CNNBaseline(Baseline):
    """A baseline whose representation is a network trained by ``manifpt.nn.train.fit_classifier``.

    Owns what the learned baselines share: the training parameters (``lr``, ``weight_decay``,
    ``batch_size``, ``max_epochs``, ``patience``, ``val_fraction``, ``device``, ``seed``, each still
    an ``__init__`` argument of the subclass, as scikit-learn requires), training (``_train``),
    probabilities and the penultimate features (what the network's ``head`` receives). A subclass
    builds its network in ``_fit_codes`` and may override ``_transform`` (a uint8 batch → the
    network's input) and ``_check`` (input validation beyond the image contract).
    """

    learned_features: ClassVar[bool] = True
    lr: float | None
    weight_decay: float
    batch_size: int
    max_epochs: int
    patience: int
    val_fraction: float
    device: str | None
    seed: int

    def _transform(self, batch: np.ndarray, device: torch.device) -> torch.Tensor:
        return image_tensor(batch, device)

    def _check(self, images: np.ndarray) -> None:
        """Raise if these (already contract-checked) images cannot go through the fitted network."""

    def _train(self, model: nn.Module, images: np.ndarray, codes: np.ndarray, *, lr: float | None = None,
               transform: Transform | None = None, seed: int | None = None) -> History:
        """``fit_classifier`` at constant ``lr``, early-stopped on the loss of a stratified
        ``val_fraction`` of the training images (no validation when a class has too few)."""
        seed = self.seed if seed is None else seed
        cfg = TrainConfig(lr=self.lr if lr is None else lr, weight_decay=self.weight_decay, batch_size=self.batch_size,
                          epochs=self.max_epochs, patience=self.patience, eval_batch_size=self.batch_size)
        split = stratified_split(codes, (1 - self.val_fraction, self.val_fraction, 0.0), seed)
        tr, va = split["train"], split["val"]
        return fit_classifier(model, images[tr], codes[tr], images[va], codes[va], config=cfg,
                              transform=transform or self._transform, device=default_device(self.device), seed=seed)

    def _proba(self, images: np.ndarray) -> np.ndarray:
        if not len(images):
            return np.zeros((0, len(self.classes_)))
        self._check(images)
        return predict_proba(self.model_, images, transform=self._transform, batch_size=self.batch_size)

    def features(self, images: np.ndarray) -> np.ndarray:
        """Penultimate activations float32 N×F (the inputs of the network's head); requires ``fit``."""
        check_is_fitted(self, "model_")
        images = check_images(images)
        self._check(images)
        return layer_inputs(self.model_, self.model_.head, images, transform=self._transform,
                            batch_size=self.batch_size)

