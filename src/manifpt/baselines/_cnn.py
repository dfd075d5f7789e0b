"""``CNNBaseline``: the base class of the learned baselines (their shared parameters, training,
probabilities and features), and their image transforms.

Training is ``manifpt.nn.train.fit_classifier`` at a constant learning rate, early-stopped on the
loss of a stratified validation split carved out of the training data only (the best epoch's
weights restored). Networks take the *raw* uint8 images and a ``transform`` that turns one
mini-batch into their input on the device (a 3×256×256 co-occurrence stack is 768 KiB an image:
too large to hold for a whole set).

The learners of ``array_inputs`` baselines also train on float arrays (artifacts, spectra:
``manifpt.learners``), standardised per element with the training set's statistics, as the ManiFPT
attributor standardises its inputs; N×D vectors get the MLP of ``manifpt.nn.nets``.
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
from .base import Baseline, check_arrays, check_images

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


def chw_shape(images: np.ndarray) -> tuple[int, ...]:
    """(C, H, W) of a uint8 N×H×W(×3) batch; a float array's own shape after N (C×H×W or D)."""
    if np.asarray(images).dtype != np.uint8:
        return tuple(check_arrays(images).shape[1:])
    images = check_images(images)
    return (1, *images.shape[1:3]) if images.ndim == 3 else (3, *images.shape[1:3])


def net_arch(arch: str, shape: tuple[int, ...]) -> str:
    """``arch`` for image-shaped inputs; the MLP for vectors, which no image CNN takes."""
    return arch if len(shape) == 3 else "mlp"


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

    def fit(self, images: np.ndarray, y: object, X_val: np.ndarray | None = None, y_val: object = None) -> CNNBaseline:
        """``Baseline.fit``; float arrays are standardised per element with their statistics here."""
        images = self._inputs(images)
        self.input_shape_ = chw_shape(images)
        self.input_stats_ = None
        if images.dtype != np.uint8:
            x = images.astype(np.float64)
            self.input_stats_ = (x.mean(0).astype(np.float32), x.std(0).clip(1e-6).astype(np.float32))
            del x
        super().fit(images, y, X_val, y_val)
        return self

    def _transform(self, batch: np.ndarray, device: torch.device) -> torch.Tensor:
        if batch.dtype == np.uint8:
            return image_tensor(batch, device)
        mean, std = (torch.from_numpy(s).to(device) for s in self.input_stats_)
        return (torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(device) - mean) / std

    def _check_fitted_inputs(self, images: np.ndarray) -> None:
        """Inputs of the kind and shape the network was fitted on (uint8 images or float arrays); a
        subclass's own ``_check`` first (its message names what does not fit)."""
        self._check(images)
        arrays = images.dtype != np.uint8
        if arrays != (getattr(self, "input_stats_", None) is not None) or chw_shape(images) != self.input_shape_:
            kind = "float arrays" if self.input_stats_ is not None else "uint8 images"
            raise ValueError(f"{self.name} was fitted on {kind} of shape {self.input_shape_}, got "
                             f"{'float arrays' if arrays else 'uint8 images'} of shape {chw_shape(images)}")

    def _check(self, images: np.ndarray) -> None:
        """Raise if these (already contract-checked) images cannot go through the fitted network."""

    def _train(self, model: nn.Module, images: np.ndarray, codes: np.ndarray, *, lr: float | None = None,
               transform: Transform | None = None, seed: int | None = None,
               val: tuple[np.ndarray, np.ndarray] | None = None) -> History:
        """``fit_classifier`` at constant ``lr``, early-stopped on the loss of ``val`` (inputs, codes),
        else of the validation set given to ``fit``, else of a stratified ``val_fraction`` of the
        training images (no validation when a class has too few)."""
        seed = self.seed if seed is None else seed
        cfg = TrainConfig(lr=self.lr if lr is None else lr, weight_decay=self.weight_decay, batch_size=self.batch_size,
                          epochs=self.max_epochs, patience=self.patience, eval_batch_size=self.batch_size)
        val = val if val is not None else getattr(self, "_val", None)
        if val is not None:
            X, y, Xv, yv = images, codes, *val
        else:
            split = stratified_split(codes, (1 - self.val_fraction, self.val_fraction, 0.0), seed)
            tr, va = split["train"], split["val"]
            X, y, Xv, yv = images[tr], codes[tr], images[va], codes[va]
        return fit_classifier(model, X, y, Xv, yv, config=cfg, transform=transform or self._transform,
                              device=default_device(self.device), seed=seed)

    def _proba(self, images: np.ndarray) -> np.ndarray:
        if not len(images):
            return np.zeros((0, len(self.classes_)))
        self._check_fitted_inputs(images)
        return predict_proba(self.model_, images, transform=self._transform, batch_size=self.batch_size)

    def features(self, images: np.ndarray) -> np.ndarray:
        """Penultimate activations float32 N×F (the inputs of the network's head); requires ``fit``."""
        check_is_fitted(self, "model_")
        images = self._inputs(images)
        self._check_fitted_inputs(images)
        return layer_inputs(self.model_, self.model_.head, images, transform=self._transform,
                            batch_size=self.batch_size)

