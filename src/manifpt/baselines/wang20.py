"""Wang20: an image CNN trained with blur + JPEG augmentation (CNNDetection).

Wang et al. train a ResNet50 (ImageNet-initialised) on real images and ProGAN images only, and
find that it generalises to other CNN generators when the training images are randomly blurred
(Gaussian, σ ~ U[0, 3]) and JPEG re-compressed (quality ~ U{30..100}), each with probability 0.5
(their "Blur+JPEG (0.5)" model), plus random horizontal flips. The augmentation keeps the CNN
from relying on fragile high-frequency details and forces it onto traces that survive
post-processing. Here the same recipe attributes images to one of K sources (multi-class head).

The paper (its Table 3) lists the method's input domain as "2D average spectra": that is how
Wang et al. *analyse* the traces (average spectra of the high-pass residuals); the classifier itself
is the image CNN implemented here.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..estimator import store_params
from ..nn.nets import build_net
from ..perturb import gaussian_blur, jpeg_roundtrip  # the perturbations `--perturb` tests with, too
from ..runtime import default_device
from ._cnn import CNNBaseline, chw_shape, image_tensor, net_arch
from .base import check_images, register_baseline

__all__ = ["Wang20", "blur_jpeg", "gaussian_blur", "image_tensor", "jpeg_roundtrip"]


def blur_jpeg(images: np.ndarray, rng: np.random.Generator, blur_prob: float = 0.5,
              blur_sigma: tuple[float, float] = (0.0, 3.0), jpeg_prob: float = 0.5,
              jpeg_quality: tuple[int, int] = (30, 100)) -> np.ndarray:
    """Wang et al.'s training augmentation on a uint8 batch (a new array; the input is not modified).

    Per image, in this order (as in their ``data_augment``): with probability ``blur_prob`` a
    Gaussian blur with σ ~ U[blur_sigma]; then with probability ``jpeg_prob`` a JPEG round trip with
    quality ~ U{jpeg_quality[0]..jpeg_quality[1]} (inclusive). Deterministic given ``rng``'s state.
    """
    out = check_images(images).copy()
    lo, hi = int(jpeg_quality[0]), int(jpeg_quality[1])
    for i in range(len(out)):
        if rng.random() < blur_prob:
            out[i] = gaussian_blur(out[i], float(rng.uniform(*blur_sigma)))
        if rng.random() < jpeg_prob:
            out[i] = jpeg_roundtrip(out[i], int(rng.integers(lo, hi + 1)))
    return out


class _AugmentingTransform:
    """Training transform: augment (blur/JPEG, flip) only while ``model`` is in training mode.

    ``train_cnn`` puts the model in training mode for its mini-batches and in eval mode to compute
    the validation loss, so early stopping sees un-augmented validation images, as predictions do.
    """

    def __init__(self, owner: Wang20, model: nn.Module, rng: np.random.Generator):
        self.owner, self.model, self.rng = owner, model, rng

    def __call__(self, batch: np.ndarray, device: torch.device) -> torch.Tensor:
        o = self.owner
        images = batch.dtype == np.uint8
        if self.model.training:
            if images:
                batch = blur_jpeg(batch, self.rng, o.blur_prob, tuple(o.blur_sigma), o.jpeg_prob, tuple(o.jpeg_quality))
            else:  # an array (an artifact): blur and JPEG are operations on images, flips still apply
                batch = np.array(batch, copy=True)
            if o.flip and batch.ndim >= 3:
                flip = self.rng.random(len(batch)) < 0.5
                axis = 2 if images else batch.ndim - 1  # W of N×H×W(×3) images, of N×C×H×W arrays
                batch[flip] = np.flip(batch[flip], axis)
        return o._transform(batch, device)


@register_baseline("wang20")
class Wang20(CNNBaseline):
    """An image CNN (ResNet50 on a GPU, a small CIFAR ResNet on CPU) trained with blur + JPEG augmentation.

    ``arch="auto"``: torchvision ResNet50 on CUDA (ImageNet-initialised when its weights are on disk,
    see ``manifpt.spaces.sl.find_resnet50_weights``; ``init_`` records which), ManiFPT's CIFAR
    ResNet with ``depth`` blocks per stage on CPU. Any architecture of
    ``manifpt.nn.nets.build_net`` can be named. ``lr=None``: Wang et al.'s 1e-4 for an
    ImageNet-initialised network, 1e-3 for one trained from scratch. ``features`` are the
    penultimate activations (the inputs of the new head); they need ``fit`` first.
    """

    array_inputs = True
    paper = """S.-Y. Wang, O. Wang, R. Zhang, A. Owens, A. A. Efros. CNN-Generated Images Are Surprisingly Easy to
    Spot... for Now. IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR) 2020, pp. 8695-8704;
    arXiv:1912.11035."""
    deviations = """
    - Multi-class softmax head over the K sources instead of the paper's binary real-vs-fake output, trained on every
      source (the paper trains on ProGAN only and tests on unseen generators).
    - On CPU (arch='auto' without CUDA) the backbone is a small CIFAR ResNet (16/32/64 channels, `depth` basic blocks
      per stage) trained from scratch instead of the ImageNet-pretrained ResNet50. On a GPU the backbone is ResNet50,
      ImageNet-initialised only when its weights are on disk (else from scratch; `init_` records which); for inputs
      under 64 px its stem is a randomly initialised 3×3 stride-1 conv without max-pool.
    - Images are used at their native resolution: no resize to 256 and no 224 random crop; the augmentation (blur σ ~
      U[0, 3] and JPEG quality ~ U{30..100}, each with p = 0.5, then a horizontal flip with p = 0.5) is applied at that
      resolution, and JPEG uses Pillow only (the paper draws OpenCV or PIL at random).
    - AdamW (weight decay 0 by default, i.e. Adam) with early stopping on the loss of a stratified 20 % validation split
      of the training data (un-augmented; best epoch restored) instead of the paper's lr ÷ 10 on plateau until 1e-6; few
      epochs on CPU (max_epochs=15). lr 1e-3 when training from scratch.
    - Grayscale images enter as one channel, normalised with the channel-averaged ImageNet statistics.
    - As a learner on float arrays (artifacts; `manifpt.learners`), inputs are standardised per element with training
      statistics and only the flips augment (blur and JPEG act on images); N×D vectors get the MLP.
    """

    def __init__(self, arch: str = "auto", depth: int = 2, pretrained: bool = True, blur_prob: float = 0.5,
                 blur_sigma: tuple[float, float] = (0.0, 3.0), jpeg_prob: float = 0.5,
                 jpeg_quality: tuple[int, int] = (30, 100), flip: bool = True, lr: float | None = None,
                 weight_decay: float = 0.0, batch_size: int = 64, max_epochs: int = 15, patience: int = 4,
                 val_fraction: float = 0.2, device: str | None = None, seed: int = 0):
        store_params(self, locals())

    def _fit_codes(self, images: np.ndarray, codes: np.ndarray) -> None:
        device = default_device(self.device)
        self.arch_ = net_arch(self.arch if self.arch != "auto" else
                              ("resnet50" if device.type == "cuda" else "cifar_resnet"), chw_shape(images))
        torch.manual_seed(self.seed)
        self.model_ = build_net(self.arch_, chw_shape(images), len(self.classes_), pretrained=self.pretrained,
                                depth=self.depth)
        self.init_ = self.model_.init
        self.lr_ = self.lr if self.lr is not None else (1e-4 if self.init_ == "imagenet" else 1e-3)
        transform = _AugmentingTransform(self, self.model_, np.random.default_rng(self.seed))
        self.train_result_ = self._train(self.model_, images, codes, lr=self.lr_, transform=transform)
