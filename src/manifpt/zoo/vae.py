"""β-VAE (Higgins et al., 2017) whose decoder is the GAN generator with the same upsampling choices.

Encoder: the DCGAN discriminator trunk (stride-2 4×4 convolutions, batch norm) with a linear head to
(μ, log σ²). Decoder: ``ConvDecoder`` with batch norm, emitting Bernoulli logits; loss = binary cross
entropy summed over pixels + β·KL(q(z|x) ‖ N(0, I)), averaged over the batch. Samples are the
decoder's mean, sigmoid(logits), for z ~ N(0, I), so the decoder's last non-linearity is a sigmoid.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .base import Batch, FamilyOptions, ZooModel, register_family, to_uint8
from .layers import ConvDecoder, ConvEncoder, Upsampling


class VAEOptions(FamilyOptions):
    upsampling: Upsampling = "transposed_conv"
    beta: float = 1.0
    z_dim: int = 16
    width: int = 64


@register_family("VAE")
class VAE(ZooModel):
    architecture = "manifpt β-VAE (DCGAN encoder/decoder)"
    Options = VAEOptions
    default_lr = 1e-3
    NETWORKS = ("enc", "dec")
    SAMPLERS = ("dec",)

    def build(self) -> None:
        o, shape, device = self.options, self.shape, self.device
        self.enc = ConvEncoder(shape, o.width, "batch", 2 * o.z_dim).to(device)
        self.dec = ConvDecoder(o.z_dim, shape, o.width, o.upsampling, "batch", "none").to(device)
        self.opt = torch.optim.Adam([*self.enc.parameters(), *self.dec.parameters()], lr=self.lr)

    def factors(self) -> dict[str, str]:
        return {"upsampling": self.options.upsampling, "loss": "elbo", "norm": "batch", "last_nl": "sigmoid"}

    def loss(self, x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.enc(x).chunk(2, dim=1)
        z = mu + torch.exp(0.5 * logvar) * self.randn(gen, *mu.shape)
        rec = F.binary_cross_entropy_with_logits(self.dec(z), x, reduction="sum") / len(x)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum() / len(x)
        return rec + self.options.beta * kl, rec, kl

    def train_step(self, batch: Batch, gen: torch.Generator) -> dict[str, float]:
        loss, rec, kl = self.loss(batch(), gen)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"rec": rec.item(), "kl": kl.item()}

    @torch.no_grad()
    def sample(self, n: int, gen: torch.Generator) -> np.ndarray:
        return to_uint8(torch.sigmoid(self.dec(self.randn(gen, n, self.options.z_dim))))
