"""Building blocks shared by the zoo's families: ×2 upsampling variants, normalisations, conv stacks.

The upsampling and normalisation choices are the design factors whose traces ManiFPT attributes,
so each is implemented once here and every family that varies it (GAN generators, VAE decoders)
uses the same code.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

Upsampling = Literal["transposed_conv", "nearest_conv", "bilinear_conv", "pixel_shuffle"]
Norm = Literal["batch", "instance", "layer", "none"]
UPSAMPLINGS: tuple[str, ...] = ("transposed_conv", "nearest_conv", "bilinear_conv", "pixel_shuffle")


def upsample(kind: str, cin: int, cout: int) -> nn.Module:
    """A ×2 upsampling layer from ``cin`` to ``cout`` channels.

    - ``transposed_conv``: ConvTranspose2d 4×4, stride 2 (DCGAN; uneven kernel overlap → checkerboard).
    - ``nearest_conv`` / ``bilinear_conv``: interpolate ×2, then Conv2d 3×3 (Odena et al., 2016).
    - ``pixel_shuffle``: Conv2d 3×3 to 4·cout channels, then PixelShuffle(2) (sub-pixel convolution).
    """
    if kind == "transposed_conv":
        return nn.ConvTranspose2d(cin, cout, 4, 2, 1)
    if kind == "nearest_conv":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, 1, 1))
    if kind == "bilinear_conv":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                             nn.Conv2d(cin, cout, 3, 1, 1))
    if kind == "pixel_shuffle":
        return nn.Sequential(nn.Conv2d(cin, 4 * cout, 3, 1, 1), nn.PixelShuffle(2))
    raise ValueError(f"unknown upsampling '{kind}' (choose from {', '.join(UPSAMPLINGS)})")


def norm2d(kind: str, c: int) -> nn.Module:
    """Feature normalisation for C×H×W maps; ``layer`` normalises over (C, H, W) per sample."""
    if kind == "batch":
        return nn.BatchNorm2d(c)
    if kind == "instance":
        return nn.InstanceNorm2d(c, affine=True)
    if kind == "layer":
        return nn.GroupNorm(1, c)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown normalisation '{kind}' (batch, instance, layer, none)")


def n_halvings(size: int) -> int:
    """How many ×2 steps lead from a ≥4-pixel seed to ``size`` (28 → 2: 7→14→28; 32 → 3: 4→8→16→32)."""
    k = 0
    while size % 2 == 0 and size // 2 >= 4:
        size //= 2
        k += 1
    if k == 0:
        raise ValueError(f"image size {size} is not divisible by 2 down to a ≥4-pixel seed")
    return k


class ConvDecoder(nn.Module):
    """DCGAN-style decoder z → image: linear to a (c0, s, s) seed, then k ×2 upsampling layers.

    The last upsampling layer outputs the image channels directly and is followed only by the
    last non-linearity, as in DCGAN, so the upsampling operator is the final spatial operation.
    ``last_nl='none'`` returns logits (the VAE applies the sigmoid inside its loss).
    """

    def __init__(self, z_dim: int, shape: tuple[int, int, int], width: int, upsampling: str, norm: str,
                 last_nl: str):
        super().__init__()
        c, h, w = shape
        if h != w:
            raise ValueError(f"square images only, got {h}×{w}")
        k = n_halvings(h)
        self.seed_size, self.c0 = h >> k, width * 2 ** (k - 1)
        self.fc = nn.Linear(z_dim, self.c0 * self.seed_size**2)
        self.norm0 = norm2d(norm, self.c0)
        layers: list[nn.Module] = []
        cin = self.c0
        for _ in range(k - 1):
            layers += [upsample(upsampling, cin, cin // 2), norm2d(norm, cin // 2), nn.ReLU(inplace=True)]
            cin //= 2
        layers.append(upsample(upsampling, cin, c))
        if last_nl == "tanh":
            layers.append(nn.Tanh())
        elif last_nl == "sigmoid":
            layers.append(nn.Sigmoid())
        elif last_nl != "none":
            raise ValueError(f"unknown last non-linearity '{last_nl}' (tanh, sigmoid, none)")
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).view(len(z), self.c0, self.seed_size, self.seed_size)
        return self.net(torch.relu(self.norm0(x)))


class ConvEncoder(nn.Module):
    """k stride-2 4×4 convolutions (mirror of ``ConvDecoder``), then a linear head to ``out_dim``.

    norm ``spectral`` wraps every layer in spectral normalisation (Miyato et al., 2018) instead of
    normalising features; the first layer is never feature-normalised (DCGAN).
    """

    def __init__(self, shape: tuple[int, int, int], width: int, norm: str, out_dim: int, act: str = "lrelu"):
        super().__init__()
        c, h, _ = shape
        k = n_halvings(h)
        sn = norm == "spectral"
        wrap = spectral_norm if sn else (lambda m: m)
        layers: list[nn.Module] = []
        cin, cout = c, width
        for i in range(k):
            layers.append(wrap(nn.Conv2d(cin, cout, 4, 2, 1)))
            if i > 0 and not sn:
                layers.append(norm2d(norm, cout))
            layers.append(nn.LeakyReLU(0.2, inplace=True) if act == "lrelu" else nn.ReLU(inplace=True))
            cin, cout = cout, cout * 2
        self.net = nn.Sequential(*layers, nn.Flatten())
        self.head = wrap(nn.Linear(cin * (h >> k) ** 2, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(x))


def count_params(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())
