"""DCGAN-style GANs whose design factors are varied one at a time (the paper's GM-CIFAR10 design).

Factors and what each changes:

- ``upsampling`` (generator): transposed_conv, nearest_conv, bilinear_conv, pixel_shuffle.
- ``loss``: nonsaturating (Goodfellow et al.), lsgan (Mao et al.), wgan_gp (Gulrajani et al., gradient
  penalty 10), hinge (Lim & Ye; Miyato et al.).
- ``norm``: batch, instance or none in both networks (the discriminator's first layer is never
  normalised, as in DCGAN); ``spectral`` puts spectral normalisation on every discriminator layer and
  keeps the generator's batch norm.
- ``last_nl``: tanh (data scaled to [-1, 1]) or sigmoid (data in [0, 1]).

One deliberate coupling: with ``wgan_gp`` a batch-normalised critic would make the per-sample
gradient penalty meaningless, so its batch norm becomes layer norm (the WGAN-GP paper's advice); the
generator keeps its norm. All models use Adam(2e-4, β = (0.5, 0.999)), batch 64, one critic step per
generator step unless ``n_critic`` says otherwise.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from .base import Batch, FamilyOptions, ZooModel, register_family, to_uint8
from .layers import ConvDecoder, ConvEncoder, Upsampling

Loss = Literal["nonsaturating", "lsgan", "wgan_gp", "hinge"]


class GANOptions(FamilyOptions):
    upsampling: Upsampling = "transposed_conv"
    loss: Loss = "nonsaturating"
    norm: Literal["batch", "instance", "none", "spectral"] = "batch"
    last_nl: Literal["tanh", "sigmoid"] = "tanh"
    z_dim: int = 64
    width: int = 64
    d_width: int = 64
    n_critic: int = 1
    gp_weight: float = 10.0
    betas: tuple[float, float] = (0.5, 0.999)


def d_loss_fn(loss: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    if loss == "nonsaturating":
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if loss == "lsgan":
        return 0.5 * ((real - 1).pow(2).mean() + fake.pow(2).mean())
    if loss == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    if loss == "wgan_gp":
        return fake.mean() - real.mean()
    raise ValueError(f"unknown GAN loss '{loss}'")


def g_loss_fn(loss: str, fake: torch.Tensor) -> torch.Tensor:
    if loss == "nonsaturating":
        return F.softplus(-fake).mean()
    if loss == "lsgan":
        return 0.5 * (fake - 1).pow(2).mean()
    if loss in ("hinge", "wgan_gp"):
        return -fake.mean()
    raise ValueError(f"unknown GAN loss '{loss}'")


@register_family("GAN")
class GAN(ZooModel):
    architecture = "manifpt DCGAN"
    Options = GANOptions
    default_lr = 2e-4
    NETWORKS = ("G", "D")
    SAMPLERS = ("G",)

    def build(self) -> None:
        o, shape, device, lr = self.options, self.shape, self.device, self.lr
        g_norm = "batch" if o.norm == "spectral" else o.norm
        d_norm = "layer" if (o.loss == "wgan_gp" and o.norm == "batch") else o.norm
        self.G = ConvDecoder(o.z_dim, shape, o.width, o.upsampling, g_norm, o.last_nl).to(device)
        self.D = ConvEncoder(shape, o.d_width, d_norm, 1).to(device)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=lr, betas=o.betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=lr, betas=o.betas)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.opt_g, "D": self.opt_d}

    def factors(self) -> dict[str, str]:
        o = self.options
        return {"upsampling": o.upsampling, "loss": o.loss, "norm": o.norm, "last_nl": o.last_nl}

    def _scale(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 - 1 if self.options.last_nl == "tanh" else x

    def _unscale(self, x: torch.Tensor) -> torch.Tensor:
        return (x + 1) / 2 if self.options.last_nl == "tanh" else x

    def _gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        eps = self.rand(gen, len(real), 1, 1, 1)
        mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.D(mix).sum(), mix, create_graph=True)
        return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()

    def train_step(self, batch: Batch, gen: torch.Generator) -> dict[str, float]:
        o = self.options
        for _ in range(o.n_critic):
            real = self._scale(batch())
            with torch.no_grad():
                fake = self.G(self.randn(gen, len(real), o.z_dim))
            d_loss = d_loss_fn(o.loss, self.D(real), self.D(fake))
            if o.loss == "wgan_gp":
                d_loss = d_loss + o.gp_weight * self._gradient_penalty(real, fake, gen)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
        fake = self.G(self.randn(gen, len(real), o.z_dim))
        g_loss = g_loss_fn(o.loss, self.D(fake))
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        return {"d": d_loss.item(), "g": g_loss.item()}

    @torch.no_grad()
    def sample(self, n: int, gen: torch.Generator) -> np.ndarray:
        return to_uint8(self._unscale(self.G(self.randn(gen, n, self.options.z_dim))))
