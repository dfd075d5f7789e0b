"""A convolutional autoencoder of the real images: the manifold as a learned continuous surface.

Trained by manifpt on the real set only (never on generated images), cached under
``$MANIFPT_CACHE/autoencoder/<key>`` (safetensors + JSON) keyed by the real set's content hash and
the recipe. The decoder upsamples with nearest-neighbour + convolution rather than transposed
convolutions, so the projection does not add a checkerboard fingerprint of its own.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from safetensors.torch import load_file, save_file
from torch import nn

from .cache import atomic_dir, cache_dir, hash_json, write_json
from .data import ImageSource
from .nn.train import train_steps
from .runtime import default_device, seed_everything, to_float_tensor


class AEConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    width: int = 32
    latent: int = 64
    steps: int = 2000
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0


class ConvAutoencoder(nn.Module):
    """Two stride-2 conv stages → dense latent → mirror decoder (nearest upsampling + conv) → sigmoid."""

    def __init__(self, channels: int, height: int, width: int, cfg: AEConfig):
        super().__init__()
        w = cfg.width
        self.h4, self.w4 = (height + 3) // 4, (width + 3) // 4
        self.size = (height, width)
        self.enc = nn.Sequential(nn.Conv2d(channels, w, 3, 2, 1), nn.GELU(), nn.Conv2d(w, 2 * w, 3, 2, 1), nn.GELU(),
                                 nn.Flatten(), nn.Linear(2 * w * self.h4 * self.w4, cfg.latent))
        self.fc = nn.Linear(cfg.latent, 2 * w * self.h4 * self.w4)
        self.dec = nn.Sequential(nn.GELU(), nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(2 * w, w, 3, 1, 1),
                                 nn.GELU(), nn.Upsample(scale_factor=2, mode="nearest"),
                                 nn.Conv2d(w, channels, 3, 1, 1))
        self.w = w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.fc(self.enc(x)).view(len(x), 2 * self.w, self.h4, self.w4)
        y = self.dec(z)[..., :self.size[0], :self.size[1]]
        return torch.sigmoid(y)


def train_autoencoder(real: ImageSource, cfg: AEConfig, device: torch.device, show: bool = True) -> ConvAutoencoder:
    gen = seed_everything(cfg.seed)
    c = 1 if len(real.shape) == 2 else 3
    ae = ConvAutoencoder(c, real.shape[0], real.shape[1], cfg).to(device)

    def step_loss() -> torch.Tensor:
        idx = np.sort(torch.randint(len(real), (min(cfg.batch_size, len(real)),), generator=gen).numpy())
        x = to_float_tensor(real.load(idx), device)
        return F.mse_loss(ae(x), x)

    train_steps(ae.parameters(), step_loss, steps=cfg.steps, lr=cfg.lr, weight_decay=1e-4,
                desc="autoencoder (real set)", show=show)
    return ae.eval().cpu()


def load_or_train(real: ImageSource, cfg: AEConfig, show: bool = True) -> tuple[ConvAutoencoder, str]:
    """The cached autoencoder of ``real`` (trained on first use); returns (model, cache key)."""
    key = hash_json({"real": real.fingerprint(), "shape": list(real.shape), "recipe": cfg.model_dump()})
    entry = cache_dir() / "autoencoder" / key
    c = 1 if len(real.shape) == 2 else 3
    if not (entry / "ae.safetensors").exists():
        ae = train_autoencoder(real, cfg, default_device(), show)
        with atomic_dir(entry) as tmp:
            save_file(ae.state_dict(), str(tmp / "ae.safetensors"))
            write_json(tmp / "meta.json", {"real": real.fingerprint(), "recipe": cfg.model_dump()})
    ae = ConvAutoencoder(c, real.shape[0], real.shape[1], cfg)
    ae.load_state_dict(load_file(str(entry / "ae.safetensors")))
    return ae.eval(), key


@torch.inference_mode()
def reconstruct(ae: ConvAutoencoder, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """uint8 images → uint8 reconstructions D(E(x)) (rounded)."""
    out = []
    for lo in range(0, len(images), batch_size):
        x = to_float_tensor(images[lo:lo + batch_size], torch.device("cpu"))
        y = (ae(x) * 255).round().clamp(0, 255).to(torch.uint8)
        out.append(y[:, 0] if images.ndim == 3 else y.permute(0, 2, 3, 1))
    return torch.cat(out).numpy() if out else np.zeros_like(images)
