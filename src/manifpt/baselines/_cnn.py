"""The CNN baselines' shared stack: a training loop (AdamW, early stopping), probabilities, features,
and ``CNNBaseline``, the base class that owns their common parameters and prediction code.

The inputs of CNN baselines are often too large to hold for a whole set (a 3×256×256 co-occurrence
stack is 768 KiB per image), so everything here takes the *raw* array ``X`` (e.g. uint8 images)
and a ``transform`` that turns one mini-batch of it into the network's input tensor on the device.
Early stopping watches the loss on a stratified validation split carved out of the training data
only, and the weights of the best validation epoch are restored at the end.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ..runtime import batchnorm_subset, default_device, recalibrate_batchnorm, to_float_tensor
from ..spaces.cnn import IMAGENET_MEAN, IMAGENET_STD
from .base import Baseline, check_images

#: mini-batch of the raw array → network input on the given device
Transform = Callable[[np.ndarray, torch.device], torch.Tensor]


GRAY_MEAN = sum(IMAGENET_MEAN) / 3
GRAY_STD = sum(IMAGENET_STD) / 3


def default_transform(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(batch, np.float32)).to(device)


def image_tensor(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 N×H×W(×3) → float32 N×C×H×W, ImageNet-normalised (grayscale: the channel-averaged statistics)."""
    x = to_float_tensor(check_images(batch), device)
    if x.shape[1] == 3:
        m = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        s = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        return (x - m) / s
    return (x - GRAY_MEAN) / GRAY_STD


def chw_shape(images: np.ndarray) -> tuple[int, int, int]:
    """(C, H, W) of a uint8 N×H×W(×3) batch."""
    images = check_images(images)
    return (1, *images.shape[1:3]) if images.ndim == 3 else (3, *images.shape[1:3])


@dataclass
class TrainConfig:
    """Optimisation recipe. ``val_fraction`` of the training data (stratified) drives early stopping."""

    lr: float = 1e-3
    weight_decay: float = 1e-2
    batch_size: int = 64
    max_epochs: int = 40
    patience: int = 6
    val_fraction: float = 0.2
    device: str | None = None


@dataclass
class TrainResult:
    best_epoch: int  # 0-based epoch whose weights were kept (the last one without validation)
    best_val_loss: float  # nan without validation
    history: list[dict[str, float]] = field(default_factory=list)


def stratified_split(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(train indices, validation indices); no validation when a class has < 2 samples or the split is empty."""
    idx = np.arange(len(y))
    n_val = math.ceil(val_fraction * len(y))
    n_classes = len(np.unique(y))
    if val_fraction <= 0 or np.bincount(y).min() < 2 or n_val < n_classes or len(y) - n_val < n_classes:
        return idx, None
    tr, va = train_test_split(idx, test_size=n_val, stratify=y, random_state=seed)
    return np.sort(tr), np.sort(va)


def _batches(n: int, batch_size: int, generator: torch.Generator | None = None) -> list[np.ndarray]:
    order = torch.randperm(n, generator=generator).numpy() if generator is not None else np.arange(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


@torch.no_grad()
def _evaluate(model: nn.Module, X: np.ndarray, y: np.ndarray, transform: Transform, device: torch.device,
              batch_size: int) -> tuple[float, float]:
    model.eval()
    loss, correct = 0.0, 0
    for b in _batches(len(X), batch_size):
        logits = model(transform(X[b], device))
        target = torch.as_tensor(y[b], device=device)
        loss += float(F.cross_entropy(logits, target, reduction="sum"))
        correct += int((logits.argmax(1) == target).sum())
    return loss / len(X), correct / len(X)


def train_cnn(model: nn.Module, X: np.ndarray, y: np.ndarray, *, transform: Transform = default_transform,
              config: TrainConfig | None = None, seed: int = 0) -> TrainResult:
    """Train ``model`` (outputs K logits) on integer labels ``y`` in 0..K−1 with cross-entropy.

    Stops when the validation loss has not improved for ``patience`` epochs and restores the best
    weights. The model is left in eval mode on ``config.device`` (default: CUDA if available).
    """
    cfg = config or TrainConfig()
    device = default_device(cfg.device)
    y = np.asarray(y, np.int64)
    tr, va = stratified_split(y, cfg.val_fraction, seed)
    gen = torch.Generator().manual_seed(seed)
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best = TrainResult(best_epoch=-1, best_val_loss=math.inf)
    best_state = None
    # a fixed subset of the training split re-estimates batch-norm statistics after every epoch
    bn_idx = batchnorm_subset(tr, seed)
    for epoch in range(cfg.max_epochs):
        model.train()
        total = 0.0
        for b in _batches(len(tr), cfg.batch_size, gen):
            if len(b) < 2 and len(tr) >= 2:  # a batch of one breaks batch norm; its sample is seen next epoch
                continue
            idx = tr[b]
            loss = F.cross_entropy(model(transform(X[idx], device)), torch.as_tensor(y[idx], device=device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        recalibrate_batchnorm(model, (transform(X[bn_idx[lo:lo + cfg.batch_size]], device)
                                      for lo in range(0, len(bn_idx), cfg.batch_size)))
        rec = {"epoch": epoch, "train_loss": total / len(tr)}
        if va is None:
            best.best_epoch, best.best_val_loss = epoch, math.nan
            best.history.append(rec)
            continue
        rec["val_loss"], rec["val_acc"] = _evaluate(model, X[va], y[va], transform, device, cfg.batch_size)
        best.history.append(rec)
        if rec["val_loss"] < best.best_val_loss:
            best.best_epoch, best.best_val_loss = epoch, rec["val_loss"]
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best.best_epoch >= cfg.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return best


@torch.no_grad()
def predict_proba(model: nn.Module, X: np.ndarray, *, transform: Transform = default_transform,
                  batch_size: int = 256) -> np.ndarray:
    """Softmax probabilities float64 N×K, in eval mode, on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    out = [torch.softmax(model(transform(X[b], device)).double(), dim=1).cpu().numpy()
           for b in _batches(len(X), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 0))


@torch.no_grad()
def layer_inputs(model: nn.Module, layer: nn.Module, X: np.ndarray, *, transform: Transform = default_transform,
                 batch_size: int = 256) -> np.ndarray:
    """float32 N×F: what ``layer`` receives (flattened), e.g. the penultimate features when it is the head."""
    model.eval()
    device = next(model.parameters()).device
    got: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, inp, _out: got.append(inp[0].flatten(1).float().cpu()))
    try:
        for b in _batches(len(X), batch_size):
            model(transform(X[b], device))
    finally:
        handle.remove()
    return torch.cat(got).numpy() if got else np.zeros((0, 0), np.float32)


class CNNBaseline(Baseline):
    """A baseline whose representation is a network trained by ``train_cnn``.

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
               transform: Transform | None = None, seed: int | None = None) -> TrainResult:
        cfg = TrainConfig(lr=self.lr if lr is None else lr, weight_decay=self.weight_decay,
                          batch_size=self.batch_size, max_epochs=self.max_epochs, patience=self.patience,
                          val_fraction=self.val_fraction, device=str(default_device(self.device)))
        return train_cnn(model, images, codes, transform=transform or self._transform, config=cfg,
                         seed=self.seed if seed is None else seed)

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

