"""Nataraj19: pixel co-occurrence matrices per colour channel, classified by a CNN.

Nataraj et al. feed a CNN the 256×256 co-occurrence matrix of horizontally adjacent pixel values
of each colour channel (a 3×256×256 tensor). The matrix is a second-order statistic that is blind
to image content at scale but sensitive to what generators get wrong locally: neighbour
correlations (smoothness), periodic up-sampling patterns (off-diagonal bands) and value ranges.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..estimator import store_params
from ._cnn import CNNBaseline
from .base import check_images, register_baseline


def _chw(images: np.ndarray) -> np.ndarray:
    images = check_images(images)
    return images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)


def cooccurrence(images: np.ndarray, offset: tuple[int, int] = (0, 1), levels: int = 256,
                 batch_size: int = 64) -> np.ndarray:
    """Co-occurrence counts float32 N×C×L×L of each channel: ``M[a, b] = #{p : x[p] = a, x[p + offset] = b}``.

    ``offset = (dy, dx)``: (0, 1) pairs each pixel with its right neighbour, giving H·(W−1) pairs per
    channel. ``levels`` < 256 quantises values as ``v·levels // 256`` first; for a power of two this
    equals sum-pooling the 256×256 matrix in (256/levels)² blocks. Grayscale images give C = 1.
    Vectorised with one ``np.bincount`` on ``((n·C + c)·L + a)·L + b`` per batch of images.
    """
    x = _chw(images)
    n, c, h, w = x.shape
    dy, dx = offset
    if abs(dy) >= h or abs(dx) >= w:
        raise ValueError(f"offset {offset} leaves no pixel pairs in {h}×{w} images")
    if not 1 <= levels <= 256:
        raise ValueError(f"levels must be in [1, 256], got {levels}")
    a_rows, b_rows = slice(max(0, -dy), h - max(0, dy)), slice(max(0, dy), h + min(0, dy))
    a_cols, b_cols = slice(max(0, -dx), w - max(0, dx)), slice(max(0, dx), w + min(0, dx))
    out = np.empty((n, c, levels, levels), np.float32)
    for i in range(0, n, batch_size):
        xb = x[i:i + batch_size].astype(np.int64)
        if levels != 256:
            xb = xb * levels // 256
        a, b = xb[:, :, a_rows, a_cols], xb[:, :, b_rows, b_cols]
        nb = len(xb)
        plane = np.arange(nb * c).reshape(nb, c, 1, 1)
        keys = (plane * levels + a) * levels + b
        out[i:i + nb] = np.bincount(keys.ravel(), minlength=nb * c * levels * levels).reshape(nb, c, levels, levels)
    return out


class CooccurrenceCNN(nn.Module):
    """Three conv blocks → global average and max pooling → linear head.

    Two constant coordinate channels (row value a and column value b, scaled to [−1, 1]) are appended
    to the input, because global pooling would otherwise discard *where* in the matrix mass lies
    (distance from the diagonal is the neighbour difference, which is the trace).
    """

    def __init__(self, in_channels: int, n_classes: int, width: int = 16, levels: int = 256):
        super().__init__()
        coords = torch.linspace(-1.0, 1.0, levels)
        self.register_buffer("coords", torch.stack(torch.meshgrid(coords, coords, indexing="ij"))[None],
                             persistent=False)

        def block(i: int, o: int) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

        self.body = nn.Sequential(*block(in_channels + 2, width), nn.MaxPool2d(2),
                                  *block(width, 2 * width), nn.MaxPool2d(2),
                                  *block(2 * width, 4 * width))
        self.head = nn.Linear(8 * width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.body(torch.cat([x, self.coords.expand(len(x), -1, -1, -1)], dim=1))
        return self.head(torch.cat([z.mean(dim=(2, 3)), z.amax(dim=(2, 3))], dim=1))


@register_baseline("nataraj19")
class Nataraj19(CNNBaseline):
    """Per-channel horizontal co-occurrence matrices → small CNN (AdamW, early stopping).

    ``features`` are the CNN's penultimate activations (pooled conv features), as the paper's Fig. 1
    uses for every CNN baseline; they need ``fit`` first. ``levels=256`` is the paper's input size;
    smaller values make CPU training cheap.
    """

    paper = """L. Nataraj, T. M. Mohammed, S. Chandrasekaran, A. Flenner, J. H. Bappy, A. K. Roy-Chowdhury, B. S.
    Manjunath. Detecting GAN generated Fake Images using Co-occurrence Matrices. Electronic Imaging (Media
    Watermarking, Security, and Forensics) 2019; arXiv:1903.06836."""
    deviations = """
    - The CNN is smaller than the paper's (three 3×3 conv blocks with batch norm, global average+max pooling, one linear
      layer; the paper stacks three pairs of 3×3/5×5 conv layers with max pooling and two dense layers on the flattened
      maps), with two coordinate channels appended so the pooled network still knows where in the matrix mass lies.
    - Input scaling: log(1 + count·L²/pairs), i.e. counts relative to a uniform matrix, compressed; the paper feeds the
      matrices without this normalisation.
    - Trained with AdamW and early stopping on the validation loss of a stratified 20 % split of the training data (best
      epoch restored); the paper's optimiser, schedule and epochs are not reproduced.
    - Multi-class softmax instead of the paper's binary real-vs-GAN output.
    - levels < 256 (an option, used in the tests) quantises pixel values before counting.
    """

    def __init__(self, levels: int = 256, offset: tuple[int, int] = (0, 1), width: int = 16, lr: float = 1e-3,
                 weight_decay: float = 1e-2, batch_size: int = 64, max_epochs: int = 40, patience: int = 6,
                 val_fraction: float = 0.2, device: str | None = None, seed: int = 0):
        store_params(self, locals())

    def _transform(self, batch: np.ndarray, device: torch.device) -> torch.Tensor:
        m = cooccurrence(batch, tuple(self.offset), self.levels)
        h, w = batch.shape[1:3]
        pairs = (h - abs(self.offset[0])) * (w - abs(self.offset[1]))
        return torch.log1p(torch.from_numpy(m).to(device) * (self.levels ** 2 / pairs))

    def _fit_codes(self, images: np.ndarray, codes: np.ndarray) -> None:
        torch.manual_seed(self.seed)
        channels = 1 if images.ndim == 3 else images.shape[3]
        self.model_ = CooccurrenceCNN(channels, len(self.classes_), self.width, self.levels)
        self.train_result_ = self._train(self.model_, images, codes)
