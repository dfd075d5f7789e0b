"""A compact Glow-style normalising flow (Dinh et al., 2017; Kingma & Dhariwal, 2018).

Pipeline: uniform dequantisation x = (pixel + u)/256, logit transform y = logit(α + (1 − 2α)x),
then ``n_scales`` levels of [squeeze → ``depth`` × (ActNorm → invertible 1×1 conv → affine coupling)
→ split off half the channels as a latent with a learned prior conditioned on the other half].
Affine coupling uses Glow's sigmoid(s + 2) scale and a zero-initialised last layer, so training
starts at the identity. Loss: negative log-likelihood in
bits per dimension of the discrete pixels. Samples: latents ~ N(0, T²) (temperature ``T``) mapped
back through the inverse, then the inverse logit and ⌊256·x⌋.

Written here rather than taken from ``normflows`` because it is ~200 lines, has no extra dependency,
and its every random number comes from the build loop's generator (exact resume).
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import Batch, FamilyOptions, ZooModel, register_family


class FlowOptions(FamilyOptions):
    n_scales: int = 2
    depth: int = 6
    hidden: int = 64
    alpha: float = 0.05
    temperature: float = 0.7
    warmup: int = 200
    clip_grad: float = 50.0


def squeeze(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    x = x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(n, c * 4, h // 2, w // 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    x = x.view(n, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(n, c // 4, h * 2, w * 2)


class ActNorm(nn.Module):
    """Per-channel affine with data-dependent initialisation (zero mean, unit variance on batch one)."""

    def __init__(self, c: int):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.register_buffer("initialised", torch.tensor(0, dtype=torch.uint8))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.initialised and self.training:
            with torch.no_grad():
                self.loc.copy_(-x.mean(dim=(0, 2, 3), keepdim=True))
                self.logs.copy_(-torch.log(x.std(dim=(0, 2, 3), keepdim=True) + 1e-6))
                self.initialised.fill_(1)
        return (x + self.loc) * torch.exp(self.logs), self.logs.sum() * x.shape[2] * x.shape[3]

    def reverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.logs) - self.loc


class InvConv1x1(nn.Module):
    """Invertible 1×1 convolution (channel mixing), initialised to a random rotation."""

    def __init__(self, c: int):
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(c, c))
        self.weight = nn.Parameter(q)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = torch.linalg.slogdet(self.weight)[1] * x.shape[2] * x.shape[3]
        return F.conv2d(x, self.weight[:, :, None, None]), logdet

    def reverse(self, y: torch.Tensor) -> torch.Tensor:
        return F.conv2d(y, torch.linalg.inv(self.weight)[:, :, None, None])


class AffineCoupling(nn.Module):
    def __init__(self, c: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(c // 2, hidden, 3, 1, 1), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, hidden, 1), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, c, 3, 1, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _params(self, xa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.net(xa)
        return h[:, 0::2], torch.sigmoid(h[:, 1::2] + 2.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xa, xb = x.chunk(2, dim=1)
        shift, scale = self._params(xa)
        return torch.cat([xa, (xb + shift) * scale], 1), torch.log(scale).flatten(1).sum(1)

    def reverse(self, y: torch.Tensor) -> torch.Tensor:
        ya, yb = y.chunk(2, dim=1)
        shift, scale = self._params(ya)
        return torch.cat([ya, yb / scale - shift], 1)


class FlowStep(nn.Module):
    def __init__(self, c: int, hidden: int):
        super().__init__()
        self.layers = nn.ModuleList([ActNorm(c), InvConv1x1(c), AffineCoupling(c, hidden)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        total = torch.zeros(len(x), device=x.device)
        for layer in self.layers:
            x, ld = layer(x)
            total = total + ld
        return x, total

    def reverse(self, y: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            y = layer.reverse(y)
        return y


class SplitPrior(nn.Module):
    """Glow's learned prior for a factored-out half: z ~ N(μ(h), σ(h)²) given the kept half h."""

    def __init__(self, c_keep: int, c_z: int):
        super().__init__()
        self.conv = nn.Conv2d(c_keep, 2 * c_z, 3, 1, 1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.conv(h)
        return out[:, 0::2], out[:, 1::2]  # mean, log σ


class MultiScaleFlow(nn.Module):
    """x (N, C, H, W) ↔ latents; ``forward`` returns (standardised latents, log|det J|).

    Each factored-out half z gets a learned Gaussian prior conditioned on the kept half (Glow);
    ``forward`` returns ε = (z − μ)/σ, so every returned latent is N(0, I) under the model, and
    the log-determinant includes −Σ log σ. ``reverse`` takes such ε (scaled by a temperature).
    """

    def __init__(self, shape: tuple[int, int, int], n_scales: int, depth: int, hidden: int):
        super().__init__()
        c, h, w = shape
        self.levels = nn.ModuleList()
        self.priors = nn.ModuleList()
        self.z_shapes: list[tuple[int, int, int]] = []
        for s in range(n_scales):
            if h % 2 or w % 2:
                raise ValueError(f"cannot squeeze {h}×{w} at scale {s}; use fewer scales")
            c, h, w = c * 4, h // 2, w // 2
            self.levels.append(nn.ModuleList([FlowStep(c, hidden) for _ in range(depth)]))
            if s < n_scales - 1:
                self.priors.append(SplitPrior(c - c // 2, c // 2))
                self.z_shapes.append((c // 2, h, w))
                c -= c // 2
        self.z_shapes.append((c, h, w))

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        zs, logdet = [], torch.zeros(len(x), device=x.device)
        for s, steps in enumerate(self.levels):
            x = squeeze(x)
            for step in steps:
                x, ld = step(x)
                logdet = logdet + ld
            if s < len(self.levels) - 1:
                x, z = x[:, : x.shape[1] - x.shape[1] // 2], x[:, x.shape[1] - x.shape[1] // 2:]
                mean, logs = self.priors[s](x)
                zs.append((z - mean) * torch.exp(-logs))
                logdet = logdet - logs.flatten(1).sum(1)
        zs.append(x)
        return zs, logdet

    def reverse(self, zs: list[torch.Tensor]) -> torch.Tensor:
        x = zs[-1]
        for s in range(len(self.levels) - 1, -1, -1):
            if s < len(self.levels) - 1:
                mean, logs = self.priors[s](x)
                x = torch.cat([x, mean + torch.exp(logs) * zs[s]], dim=1)
            for step in reversed(self.levels[s]):
                x = step.reverse(x)
            x = unsqueeze(x)
        return x


@register_family("flow")
class Flow(ZooModel):
    architecture = "manifpt Glow-style flow (actnorm, 1x1 conv, affine coupling, multi-scale)"
    Options = FlowOptions
    default_lr = 1e-3
    NETWORKS = ("flow",)
    FACTORS: ClassVar[dict[str, str]] = dict(upsampling="n/a", loss="nll", norm="actnorm", last_nl="n/a")

    def build(self) -> None:
        o = self.options
        self.flow = MultiScaleFlow(self.shape, o.n_scales, o.depth, o.hidden).to(self.device)
        self.opt = torch.optim.Adam(self.flow.parameters(), lr=self.lr)

    def nll_bits(self, pixels01: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Mean negative log-likelihood of the discrete pixels, in bits per dimension."""
        a = self.options.alpha
        x = (pixels01 * 255 + self.rand(gen, *pixels01.shape)) / 256
        p = a + (1 - 2 * a) * x
        y = torch.log(p) - torch.log1p(-p)
        ld_pre = (math.log(1 - 2 * a) - torch.log(p) - torch.log1p(-p)).flatten(1).sum(1)
        zs, logdet = self.flow(y)
        logpz = sum((-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1) for z in zs)
        dims = pixels01[0].numel()
        log_px = logpz + logdet + ld_pre - dims * math.log(256)
        return (-log_px / (dims * math.log(2))).mean()

    def train_step(self, batch: Batch, gen: torch.Generator) -> dict[str, float]:
        o = self.options
        for g in self.opt.param_groups:
            g["lr"] = self.lr * min(1.0, (self.current_step + 1) / max(1, o.warmup))
        loss = self.nll_bits(batch(), gen)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.flow.parameters(), o.clip_grad)
        self.opt.step()
        return {"bpd": loss.item()}

    @torch.no_grad()
    def sample(self, n: int, gen: torch.Generator) -> np.ndarray:
        t, a = self.options.temperature, self.options.alpha
        zs = [t * self.randn(gen, n, *s) for s in self.flow.z_shapes]
        x = (torch.sigmoid(self.flow.reverse(zs)) - a) / (1 - 2 * a)
        arr = torch.floor(x.clamp(0, 1) * 256).clamp(max=255).to(torch.uint8).cpu().numpy()
        return arr[:, 0] if arr.shape[1] == 1 else arr.transpose(0, 2, 3, 1)
