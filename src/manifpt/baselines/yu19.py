"""Yu19: learned image fingerprints correlated with learned per-model fingerprints.

Yu, Davis & Fritz make the notion of a GAN fingerprint explicit: a reconstruction network R (an
auto-encoder) reproduces the image content, an image fingerprint F_I(x) is extracted from what R
leaves out, and every source k has a model fingerprint F_M[k], a free learnable tensor of the same
shape as F_I(x). The response of source k is the normalised correlation of the two,
``corr(A, B) = Â · B̂`` with ``Â = (A − mean A) / ‖A − mean A‖``, and the responses are the logits of a
softmax classifier; R, F_I and every F_M[k] are trained jointly by cross-entropy plus a
reconstruction loss on R. The F_M[k] are then images one can look at (``model_fingerprints``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ..estimator import store_params
from ._cnn import CNNBaseline, chw_shape, image_tensor
from .base import check_images, register_baseline


class _AddLoss(torch.autograd.Function):
    """Identity on ``output`` whose backward also sends gradient 1 into the scalar ``aux``."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, output: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
        return output.clone()

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return grad, torch.ones((), dtype=grad.dtype, device=grad.device)


def add_aux_loss(output: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
    """``output`` unchanged, but any loss ``L(output)`` back-propagates as ``L + aux`` (``aux`` a scalar).

    ``_cnn.train_cnn`` minimises the cross-entropy of the model's output; a model that returns
    ``add_aux_loss(logits, λ·R)`` in training mode is thereby trained on ``CE + λ·R``. The reported
    training and validation losses remain the cross-entropy alone (validation runs in eval mode).
    """
    return _AddLoss.apply(output, aux.reshape(()))


def normalise(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per sample (first axis): subtract the mean over all other axes and divide by the L2 norm."""
    x = x - x.mean(dim=tuple(range(1, x.ndim)), keepdim=True)
    return x / x.flatten(1).norm(dim=1).clamp_min(eps).view(-1, *([1] * (x.ndim - 1)))


class Reconstructor(nn.Module):
    """A small conv auto-encoder: two stride-2 encoder stages, bilinear up-sampling back to the input size."""

    def __init__(self, channels: int, width: int):
        super().__init__()
        act = nn.LeakyReLU(0.2, inplace=True)
        self.enc = nn.Sequential(nn.Conv2d(channels, width, 3, 1, 1), act,
                                 nn.Conv2d(width, 2 * width, 4, 2, 1), act,
                                 nn.Conv2d(2 * width, 2 * width, 4, 2, 1), act)
        self.mid = nn.Sequential(nn.Conv2d(2 * width, width, 3, 1, 1), act)
        self.out = nn.Sequential(nn.Conv2d(width, width, 3, 1, 1), act, nn.Conv2d(width, channels, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        z = self.enc(x)
        z = self.mid(F.interpolate(z, size=((h + 1) // 2, (w + 1) // 2), mode="bilinear", align_corners=False))
        return self.out(F.interpolate(z, size=(h, w), mode="bilinear", align_corners=False))


class FingerprintNet(nn.Module):
    """R (auto-encoder), F_I (three same-size convs on the residual x − R(x)), F_M (K×C×H×W) and a logit scale."""

    def __init__(self, shape: tuple[int, int, int], n_classes: int, width: int = 16, scale: float = 10.0,
                 recon_weight: float = 1.0):
        super().__init__()
        c = shape[0]
        self.recon = Reconstructor(c, width)
        act = nn.LeakyReLU(0.2, inplace=True)
        self.extract = nn.Sequential(nn.Conv2d(c, width, 3, 1, 1), act, nn.Conv2d(width, width, 3, 1, 1), act,
                                     nn.Conv2d(width, c, 3, 1, 1))
        self.model_fingerprints = nn.Parameter(torch.randn(n_classes, *shape))
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale)))
        self.recon_weight = recon_weight

    def image_fingerprint(self, x: torch.Tensor, r: torch.Tensor | None = None) -> torch.Tensor:
        """The normalised image fingerprint N×C×H×W (``r`` = R(x) when already computed)."""
        return normalise(self.extract(x - (self.recon(x) if r is None else r)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.recon(x)
        fi = self.image_fingerprint(x, r).flatten(1)
        fm = normalise(self.model_fingerprints).flatten(1)
        logits = self.log_scale.exp() * fi @ fm.T
        if self.training and self.recon_weight > 0:
            logits = add_aux_loss(logits, self.recon_weight * (r - x).abs().mean())
        return logits


@register_baseline("yu19")
class Yu19(CNNBaseline):
    """Image fingerprint (from the reconstruction residual) × learnable model fingerprints → correlation logits.

    ``features`` are the flattened normalised image fingerprints (C·H·W values), average-pooled to at
    most ``max_features`` values when larger; they need ``fit`` first. ``model_fingerprints`` returns the
    learned F_M[k] as float arrays of the image shape (H×W or H×W×3), in ``classes_`` order. Images at
    predict time must have the training images' size (the model fingerprints have that size).
    """

    paper = """N. Yu, L. Davis, M. Fritz. Attributing Fake Images to GANs: Learning and Analyzing GAN Fingerprints.
    IEEE/CVF International Conference on Computer Vision (ICCV) 2019, pp. 7556-7566; arXiv:1811.08180."""
    deviations = """
    - Networks are CPU-sized: R is a 2-level conv auto-encoder (`width`/2·`width` channels) and F_I three 3×3
      convolutions on the residual x − R(x); the paper's R and F_I are deeper and work at 128×128. Images are used at
      their native resolution.
    - The reconstruction loss is the L1 pixel loss only (weight `recon_weight`, on ImageNet-normalised inputs); the
      paper's reconstruction objective also has adversarial and perceptual terms.
    - The correlation logits are multiplied by a learnable scale (initial value `scale`), which the plain correlation in
      [−1, 1] would otherwise lack to reach confident probabilities.
    - AdamW (lr 1e-3, weight decay 1e-4) with early stopping on the cross-entropy of a stratified 20 % validation split
      of the training data (best epoch restored), few epochs on CPU (max_epochs=15); the paper's optimiser, schedule and
      epochs are not reproduced.
    - Penultimate features (for FD ratio / t-SNE) are the flattened normalised image fingerprint, average-pooled to at
      most `max_features` values for large images.
    """

    def __init__(self, width: int = 16, recon_weight: float = 1.0, scale: float = 10.0, max_features: int = 4096,
                 lr: float = 1e-3, weight_decay: float = 1e-4, batch_size: int = 64, max_epochs: int = 15,
                 patience: int = 4, val_fraction: float = 0.2, device: str | None = None, seed: int = 0):
        store_params(self, locals())

    def _fit_codes(self, images: np.ndarray, codes: np.ndarray) -> None:
        torch.manual_seed(self.seed)
        self.shape_ = chw_shape(images)
        self.model_ = FingerprintNet(self.shape_, len(self.classes_), self.width, self.scale, self.recon_weight)
        self.train_result_ = self._train(self.model_, images, codes)

    def _check(self, images: np.ndarray) -> None:
        if len(images) and chw_shape(images) != self.shape_:
            raise ValueError(f"images are {chw_shape(images)} (C, H, W) but the model fingerprints are {self.shape_}")

    @torch.no_grad()
    def features(self, images: np.ndarray) -> np.ndarray:
        """Normalised image fingerprints float32 N×F, F = C·H·W (or pooled to ≤ ``max_features``); requires ``fit``."""
        check_is_fitted(self, "model_")
        images = check_images(images)
        self._check(images)
        c, h, w = self.shape_
        side = max(1, math.isqrt(self.max_features // c)) if c * h * w > self.max_features else 0
        self.model_.eval()
        device = next(self.model_.parameters()).device
        out = []
        for i in range(0, len(images), self.batch_size):
            fi = self.model_.image_fingerprint(image_tensor(images[i:i + self.batch_size], device))
            if side:
                fi = F.adaptive_avg_pool2d(fi, (min(side, h), min(side, w)))
            out.append(fi.flatten(1).float().cpu())
        n_feat = c * (min(side, h) * min(side, w) if side else h * w)
        return torch.cat(out).numpy() if out else np.zeros((0, n_feat), np.float32)

    def model_fingerprints(self) -> np.ndarray:
        """The learned model fingerprints F_M, normalised (zero mean, unit norm), float32 K×H×W(×3)."""
        check_is_fitted(self, "model_")
        with torch.no_grad():
            fm = normalise(self.model_.model_fingerprints).float().cpu().numpy()
        return fm[:, 0] if fm.shape[1] == 1 else fm.transpose(0, 2, 3, 1)
