"""The attributor's networks: image backbones for image-shaped artifacts, an MLP for vectors.

The Marra19 and Wang20 baselines build theirs here too.

Every network exposes ``features(x)`` (the penultimate representation, used for FD ratio and
t-SNE) and ``head`` (the new softmax layer), so the training loop and the metrics need no
per-architecture code.

- ``resnet50``: torchvision ResNet50 + new head (paper Sec. 2.3). ImageNet-initialised when the
  weights are on disk (see ``manifpt.spaces.sl.find_resnet50_weights``), otherwise from scratch.
  For inputs under 64 px the stem becomes a 3×3 stride-1 conv without max-pool (CIFAR stem,
  randomly initialised), since a 7×7/4 stem would reduce a 28 px artifact to 7 px at once.
  One-channel inputs sum the pretrained conv1 filters over RGB.
- ``resnet18``: the same, smaller.
- ``cifar_resnet``: the authors' released attributor: 3 stages of 16/32/64 channels, ``depth``
  basic blocks each (3 = ResNet-20), trained from scratch.
- ``mlp``: vector artifacts (SL/SSL; the paper is silent): LayerNorm → 512 → GELU → dropout → 256
  → GELU → head. Small and regularised because these sets have ~10³ samples per class in 10³ dims.
- ``linear``: a linear probe (multinomial logistic regression) on any artifact.
"""

from __future__ import annotations

from math import prod

import torch
from torch import nn

from .resnet import CifarResNet

ARCHS = ("resnet50", "resnet18", "cifar_resnet", "mlp", "linear")


class Net(nn.Module):
    """features → head; ``init`` records how the weights started ('imagenet' or 'scratch')."""

    def __init__(self, body: nn.Module, dim: int, n_classes: int, init: str = "scratch"):
        super().__init__()
        self.body = body
        self.head = nn.Linear(dim, n_classes)
        self.dim, self.init = dim, init

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class CoordChannels(nn.Module):
    """Append normalised (y, x) coordinate channels (CoordConv, Liu et al. 2018).

    In a spectrum, position *is* frequency; a convolutional net with global pooling is blind to
    position, so FREQ artifacts get their coordinates as two extra input channels.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        yy = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype).view(1, 1, h, 1).expand(n, 1, h, w)
        xx = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype).view(1, 1, 1, w).expand(n, 1, h, w)
        return torch.cat([x, yy, xx], 1)


def _torchvision_resnet(name: str, in_channels: int, size: int, pretrained: bool) -> tuple[nn.Module, int, str]:
    import torchvision.models as tvm

    from ..spaces.cnn import load_state_dict
    from ..spaces.sl import find_resnet50_weights

    model = getattr(tvm, name)(weights=None)
    init = "scratch"
    path = find_resnet50_weights() if (pretrained and name == "resnet50") else None
    if path is not None:
        model.load_state_dict(load_state_dict(path))
        init = "imagenet"
    w = model.conv1.weight.data
    if size < 64:
        model.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        if init == "imagenet":
            model.conv1.weight.data = w.sum(1, keepdim=True).repeat(1, in_channels, 1, 1) / in_channels
    dim = model.fc.in_features
    model.fc = nn.Identity()
    return model, dim, init


def build_net(arch: str, input_shape: tuple[int, ...], n_classes: int, pretrained: bool = True,
              depth: int = 3, coords: bool = False) -> Net:
    """A network for artifacts of ``input_shape`` (C, H, W) or (D,); ``coords`` adds CoordConv channels."""
    if arch in ("resnet50", "resnet18", "cifar_resnet") and len(input_shape) != 3:
        raise ValueError(f"{arch} needs image-shaped artifacts (C×H×W), got shape {input_shape}")
    if arch in ("resnet50", "resnet18"):
        c = input_shape[0] + 2 * coords
        body, dim, init = _torchvision_resnet(arch, c, min(input_shape[1:]), pretrained and not coords)
        return Net(nn.Sequential(CoordChannels(), body) if coords else body, dim, n_classes, init)
    if arch == "cifar_resnet":
        body = CifarResNet(input_shape[0] + 2 * coords, 16, (depth,) * 3)
        return Net(nn.Sequential(CoordChannels(), body) if coords else body, body.dim, n_classes)
    d = prod(input_shape)
    if arch == "mlp":
        body = nn.Sequential(nn.Flatten(), nn.LayerNorm(d), nn.Linear(d, 512), nn.GELU(), nn.Dropout(0.2),
                             nn.Linear(512, 256), nn.GELU())
        return Net(body, 256, n_classes)
    if arch == "linear":
        return Net(nn.Flatten(), d, n_classes)
    raise ValueError(f"unknown attributor architecture '{arch}' ({', '.join(ARCHS)})")


IMAGE_ARCHS = ("resnet50", "resnet18", "cifar_resnet")


def arch_for(arch: str, input_shape: tuple[int, ...] | None) -> str:
    """A run-wide attributor choice applied to one space: an image CNN (``IMAGE_ARCHS``) is meant for
    image-shaped artifacts (RGB, FREQ); vector artifacts (SL, SSL) then get the default head (MLP)."""
    return "auto" if arch in IMAGE_ARCHS and (input_shape is None or len(input_shape) != 3) else arch


def default_arch(input_shape: tuple[int, ...], device: torch.device) -> str:
    """ResNet50 (the paper's) on a GPU, the authors' CIFAR ResNet on CPU, an MLP for vectors."""
    if len(input_shape) != 3:
        return "mlp"
    return "resnet50" if device.type == "cuda" else "cifar_resnet"
