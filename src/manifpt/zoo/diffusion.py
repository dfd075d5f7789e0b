"""DDPM (Ho et al., 2020) with diffusers" ``UNet2DModel`` and ``DDPMScheduler``; DDIM sampling.

CPU-sized: a three-level U-Net (channels 32/64/64, one ResNet block per level, self-attention only
in the 7×7 / 4×4 middle block, group norm with 8 groups), ε-prediction with an MSE loss over
1,000 linear-β timesteps, and an exponential moving average of the weights (decay 0.995 with the
usual (1 + t)/(10 + t) warm-up) that is used for sampling. Sampling runs the deterministic DDIM
sampler (η = 0, Song et al., 2021) for ``sample_steps`` steps from the same noise schedule, which is
the standard fast sampler for a DDPM-trained network (``sample_steps: 0`` runs full ancestral DDPM).
diffusers" up-blocks upsample by nearest interpolation + 3×3 convolution, hence ``nearest_conv``.
"""

from __future__ import annotations

import copy
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F

from .base import Batch, FamilyOptions, ZooModel, register_family, to_uint8


class DDPMOptions(FamilyOptions):
    channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    norm_groups: int = 8
    mid_attention: bool = True
    timesteps: int = 1000
    beta_schedule: Literal["linear", "squaredcos_cap_v2"] = "linear"
    sample_steps: int = 50
    ema: float = 0.995


@register_family("DDPM")
class DDPM(ZooModel):
    architecture = "diffusers UNet2DModel + DDPMScheduler (DDIM sampling)"
    Options = DDPMOptions
    default_lr = 5e-4
    NETWORKS = ("unet", "ema")
    SAMPLERS = ("ema",)
    FACTORS: ClassVar[dict[str, str]] = dict(upsampling="nearest_conv", loss="eps_mse", norm="group", last_nl="n/a")

    def build(self) -> None:
        from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

        o = self.options
        c, h, _ = self.shape
        n = len(o.channels)
        self.unet = UNet2DModel(
            sample_size=h, in_channels=c, out_channels=c, block_out_channels=tuple(o.channels),
            layers_per_block=o.layers_per_block, norm_num_groups=o.norm_groups,
            down_block_types=("DownBlock2D",) * n, up_block_types=("UpBlock2D",) * n,
            add_attention=o.mid_attention, attention_head_dim=min(32, o.channels[-1]),
        ).to(self.device)
        self.ema = copy.deepcopy(self.unet).requires_grad_(False).eval()
        self.scheduler = DDPMScheduler(num_train_timesteps=o.timesteps, beta_schedule=o.beta_schedule)
        self.sampler = DDIMScheduler.from_config(self.scheduler.config) if o.sample_steps else None
        self.opt = torch.optim.Adam(self.unet.parameters(), lr=self.lr)

    def train(self, mode: bool = True) -> None:
        self.unet.train(mode)
        self.ema.eval()

    def train_step(self, batch: Batch, gen: torch.Generator) -> dict[str, float]:
        x = batch() * 2 - 1
        t = torch.randint(self.options.timesteps, (len(x),), generator=gen).to(self.device)
        noise = self.randn(gen, *x.shape)
        pred = self.unet(self.scheduler.add_noise(x, noise, t), t).sample
        loss = F.mse_loss(pred, noise)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"mse": loss.item()}

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        d = min(self.options.ema, (1 + step) / (10 + step))
        for pe, p in zip(self.ema.parameters(), self.unet.parameters(), strict=True):
            pe.mul_(d).add_(p.detach(), alpha=1 - d)

    @torch.no_grad()
    def sample(self, n: int, gen: torch.Generator) -> np.ndarray:
        x = self.randn(gen, n, *self.shape)
        if self.sampler is not None:
            self.sampler.set_timesteps(self.options.sample_steps)
            for t in self.sampler.timesteps:
                x = self.sampler.step(self.ema(x, t.to(self.device)).sample, t, x, eta=0.0).prev_sample
        else:
            for t in range(self.options.timesteps - 1, -1, -1):
                tt = torch.full((n,), t, device=self.device)
                x = self._ddpm_step(self.ema(x, tt).sample, t, x, self.randn(gen, *x.shape))
        return to_uint8((x + 1) / 2)

    def _ddpm_step(self, eps: torch.Tensor, t: int, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Ancestral DDPM step with caller-supplied noise (posterior mean + σ_t·noise, x₀ clipped)."""
        ac = self.scheduler.alphas_cumprod
        a_bar = ac[t].to(x)
        a_bar_prev = ac[t - 1].to(x) if t > 0 else torch.ones((), device=x.device)
        beta = 1 - a_bar / a_bar_prev
        x0 = ((x - (1 - a_bar).sqrt() * eps) / a_bar.sqrt()).clamp(-1, 1)
        mean = (a_bar_prev.sqrt() * beta / (1 - a_bar)) * x0 + ((1 - beta).sqrt() * (1 - a_bar_prev) / (1 - a_bar)) * x
        if t == 0:
            return mean
        var = beta * (1 - a_bar_prev) / (1 - a_bar)
        return mean + var.sqrt() * noise
