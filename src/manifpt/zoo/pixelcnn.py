"""PixelCNN (van den Oord et al., 2016): masked convolutions, a 256-way softmax per pixel.

Network: a 7×7 type-A masked convolution (a pixel never sees itself), residual 3×3 type-B masked
convolutions with dilations (1, 2, 4, 8, 2) so five layers see ~20 rows up (a plain stack of five
sees 8 rows, too few for a garment's shape), then two 1×1 convolutions to 256 logits per channel.
Colour images use one simplification: a pixel's channels are predicted jointly from the previous
pixels (no R→G→B ordering inside a pixel). Loss: cross-entropy of the discrete values (bits/dim).

Sampling draws pixel by pixel in raster order (Gumbel-max on the CPU generator). It is exact but
cheap: at the start of each row one full pass caches every layer's input (the rows above are final),
then each pixel recomputes only the current row of each layer and the head at that one pixel
(tested equal to running the whole network per pixel).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import Batch, FamilyOptions, ZooModel, register_family


class PixelCNNOptions(FamilyOptions):
    width: int = 64
    #: dilation of each residual 3×3 layer; dilations let a few layers see most of a 28×28 image
    dilations: tuple[int, ...] = (1, 2, 4, 8, 2)
    first_kernel: int = 7
    head: int = 128


class MaskedConv2d(nn.Conv2d):
    """Conv2d whose kernel sees only rows above and pixels to the left (and the centre for type B)."""

    def __init__(self, mask_type: str, cin: int, cout: int, k: int, dilation: int = 1):
        super().__init__(cin, cout, k, 1, dilation * (k // 2), dilation)
        mask = torch.ones(cout, cin, k, k)
        mask[:, :, k // 2, k // 2 + (mask_type == "B"):] = 0
        mask[:, :, k // 2 + 1:] = 0
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, self.stride, self.padding, self.dilation)

    def row(self, x: torch.Tensor, row: torch.Tensor, i: int) -> torch.Tensor:
        """Output row ``i`` of this layer for input ``x`` whose row ``i`` is replaced by ``row``.

        Only rows ≤ i carry weight (the mask zeroes the rows below), so the rows above come from
        ``x``, the current row from ``row``, and zeros stand in for the rows below.
        """
        p = self.padding[0]
        top = x[:, :, max(0, i - p):i]
        slab = F.pad(torch.cat([top, row], 2), (0, 0, p - top.shape[2], p))
        return F.conv2d(slab, self.weight * self.mask, self.bias, 1, (0, self.padding[1]), self.dilation)


class PixelCNNNet(nn.Module):
    def __init__(self, channels: int, width: int, dilations: tuple[int, ...], first_kernel: int, head: int):
        super().__init__()
        self.channels = channels
        self.inp = MaskedConv2d("A", channels, width, first_kernel)
        self.blocks = nn.ModuleList([MaskedConv2d("B", width, width, 3, d) for d in dilations])
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(width, head, 1), nn.ReLU(), nn.Conv2d(head, 256 * channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits N×C×256×H×W for inputs scaled to [-1, 1]."""
        h = self.inp(x)
        for b in self.blocks:
            h = h + b(torch.relu(h))
        out = self.head(h)
        n, _, hh, ww = out.shape
        return out.view(n, self.channels, 256, hh, ww)

    @torch.no_grad()
    def sample(self, canvas: torch.Tensor, draw: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Fill ``canvas`` (N×C×H×W, scaled to [-1, 1]) in raster order; ``draw(logits N×C×256)`` → values.

        Exact and cheap: at the start of row i one full pass caches every layer's input (rows < i are
        final, so those rows are exact); then each pixel recomputes only row i of each layer.
        """
        n, c, h, w = canvas.shape
        for i in range(h):
            hs, x = [], self.inp(canvas)
            for b in self.blocks:
                hs.append(torch.relu(x))
                x = x + b(hs[-1])
            for j in range(w):
                x = self.inp.row(canvas, canvas[:, :, i:i + 1], i)
                for b, cached in zip(self.blocks, hs, strict=True):
                    x = x + b.row(cached, torch.relu(x), i)
                logits = self.head(x[:, :, :, j:j + 1]).view(n, c, 256)
                canvas[:, :, i, j] = draw(logits).float() / 255 * 2 - 1
        return canvas


@register_family("PixelCNN")
class PixelCNN(ZooModel):
    architecture = "manifpt PixelCNN (masked convolutions, 256-way softmax)"
    Options = PixelCNNOptions
    default_lr = 1e-3
    NETWORKS = ("net",)
    FACTORS: ClassVar[dict[str, str]] = dict(upsampling="n/a", loss="nll", norm="none", last_nl="n/a")

    def build(self) -> None:
        o = self.options
        self.net = PixelCNNNet(self.shape[0], o.width, tuple(o.dilations), o.first_kernel, o.head).to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)

    def train_step(self, batch: Batch, gen: torch.Generator) -> dict[str, float]:
        x = batch()
        target = (x * 255).round().long()
        loss = F.cross_entropy(self.net(x * 2 - 1).transpose(1, 2), target)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"bpd": loss.item() / math.log(2)}

    @torch.no_grad()
    def sample(self, n: int, gen: torch.Generator) -> np.ndarray:
        c, h, w = self.shape

        def draw(logits: torch.Tensor) -> torch.Tensor:  # Gumbel-max with the CPU generator's noise
            u = self.rand(gen, *logits.shape).clamp_min(1e-20)
            return (logits - torch.log(-torch.log(u))).argmax(-1)

        canvas = self.net.sample(torch.zeros(n, c, h, w, device=self.device), draw)
        arr = ((canvas + 1) / 2 * 255).round().to(torch.uint8).cpu().numpy()
        return arr[:, 0] if c == 1 else arr.transpose(0, 2, 3, 1)
