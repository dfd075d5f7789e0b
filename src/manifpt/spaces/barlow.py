"""Barlow Twins (Zbontar et al., 2021) trained by manifpt on the real set: the offline SSL encoder.

When the published Barlow Twins ResNet50 cannot be fetched, the SSL space learns its own
self-supervised encoder from the real images alone (never from generated ones), so the space stays
"self-supervised features of real data" in the paper's sense. Encoder: a CIFAR-style ResNet18
(3×3 stem, no max-pool) of configurable width, suited to small images; projector: 3-layer MLP with
batch norm; loss: the Barlow Twins redundancy-reduction loss. Deviations from the paper's recipe
(LARS, 1000 epochs, batch 2048, ImageNet) are the CPU-sized defaults in ``BarlowTwinsConfig``.
Augmentations are batched tensor ops (random resized crop via ``affine_grid``, flip, colour jitter,
random grayscale, blur), so training needs no per-image Python loop.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from torch import nn

from ..data import ImageSource
from ..nn.resnet import CifarResNet
from ..nn.train import train_steps
from ..runtime import seed_everything, to_float_tensor


class BarlowTwinsConfig(BaseModel):
    """Training recipe; every field enters the cache key."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    width: int = 32
    proj_dim: int = 1024
    lambd: float = 5e-3
    steps: int = 1500
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    crop_scale: tuple[float, float] = (0.3, 1.0)
    seed: int = 0


def encoder(in_channels: int, width: int) -> CifarResNet:
    """The encoder: a ResNet18-shaped CIFAR ResNet (4 stages of 2 blocks, ``width``·1/2/4/8 channels)."""
    return CifarResNet(in_channels, width, (2, 2, 2, 2))


def projector(dim_in: int, dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(dim_in, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
                         nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
                         nn.Linear(dim, dim, bias=False))


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float) -> torch.Tensor:
    """Σ_i (1 − C_ii)² + λ Σ_{i≠j} C_ij², C = cross-correlation of batch-standardised embeddings."""
    n = z1.shape[0]
    z1 = (z1 - z1.mean(0)) / (z1.std(0, unbiased=False) + 1e-6)
    z2 = (z2 - z2.mean(0)) / (z2.std(0, unbiased=False) + 1e-6)
    c = z1.T @ z2 / n
    on = (torch.diagonal(c) - 1).pow(2).sum()
    off = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on + lambd * off


def augment(x: torch.Tensor, gen: torch.Generator, crop_scale: tuple[float, float]) -> torch.Tensor:
    """Batched SimCLR/Barlow-style views of float images in [0, 1] (N×C×H×W)."""
    n, c = x.shape[:2]
    dev = x.device

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen).to(dev)

    scale = crop_scale[0] + (crop_scale[1] - crop_scale[0]) * rand(n)
    logr = (rand(n) - 0.5) * 2 * math.log(4 / 3)
    ratio = torch.exp(logr)
    sw = torch.sqrt(scale * ratio).clamp(max=1.0)
    sh = torch.sqrt(scale / ratio).clamp(max=1.0)
    tx = (1 - sw) * (2 * rand(n) - 1)
    ty = (1 - sh) * (2 * rand(n) - 1)
    flip = torch.where(rand(n) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sw * flip, tx, sh, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    # colour jitter (p=0.8): brightness, contrast, saturation
    jit = (rand(n, 1, 1, 1) < 0.8).float()
    b = 1 + jit * (rand(n, 1, 1, 1) - 0.5) * 0.8
    k = 1 + jit * (rand(n, 1, 1, 1) - 0.5) * 0.8
    x = x * b
    x = (x - x.mean(dim=(1, 2, 3), keepdim=True)) * k + x.mean(dim=(1, 2, 3), keepdim=True)
    if c == 3:
        gray = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
        s = 1 + jit * (rand(n, 1, 1, 1) - 0.5) * 0.8
        x = gray + (x - gray) * s
        to_gray = (rand(n, 1, 1, 1) < 0.2).float()
        x = to_gray * gray.expand_as(x) + (1 - to_gray) * x
    # blur (p=0.5): 3×3 binomial kernel
    kern = torch.tensor([1.0, 2.0, 1.0], device=dev)
    kern = (kern[:, None] * kern[None, :] / 16).expand(c, 1, 3, 3)
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), kern, groups=c)
    bl = (rand(n, 1, 1, 1) < 0.5).float()
    return (bl * blurred + (1 - bl) * x).clamp(0, 1)


def normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - 0.5) / 0.5


def train_barlow_twins(real: ImageSource, cfg: BarlowTwinsConfig, device: torch.device,
                       show_progress: bool = True) -> CifarResNet:
    """Train an encoder on the real set only; returns it in eval mode on CPU."""
    gen = seed_everything(cfg.seed)
    channels = 1 if len(real.shape) == 2 else real.shape[2]
    enc = encoder(channels, cfg.width).to(device)
    proj = projector(enc.dim, cfg.proj_dim).to(device)
    params = list(enc.parameters()) + list(proj.parameters())
    bs = min(cfg.batch_size, len(real))
    enc.train()
    proj.train()

    def step_loss() -> torch.Tensor:
        idx = torch.randint(len(real), (bs,), generator=gen).numpy()
        x = to_float_tensor(real.load(np.sort(idx)), device)
        z1 = proj(enc(normalise(augment(x, gen, cfg.crop_scale))))
        z2 = proj(enc(normalise(augment(x, gen, cfg.crop_scale))))
        return barlow_twins_loss(z1, z2, cfg.lambd)

    train_steps(params, step_loss, steps=cfg.steps, lr=cfg.lr, weight_decay=cfg.weight_decay,
                desc="barlow twins (ssl encoder)", show=show_progress, fmt="{:.2f}")
    return enc.eval().cpu()
