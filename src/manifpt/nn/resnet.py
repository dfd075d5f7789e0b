"""ResNets for small images: 3×3 stride-1 stem, no max-pool, ``BasicBlock`` stages.

One class serves the attributor's CIFAR ResNet (He et al. 2016, Sec. 4.2: 16/32/64 channels,
``depth`` blocks a stage; 3 = ResNet-20), the ResNet18-shaped offline SSL encoder (4 stages of
2 blocks) and the baselines that borrow the attributor's network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.short(x))


class CifarResNet(nn.Module):
    """Stage ``i`` has ``width·2^i`` channels and ``blocks[i]`` blocks (stride 2 from the second stage on).

    ``features`` is the last feature map, ``forward`` its global average (``dim`` values).
    """

    def __init__(self, in_channels: int = 3, width: int = 16, blocks: tuple[int, ...] = (3, 3, 3)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        layers, cin = [], width
        for i, n in enumerate(blocks):
            cout = width * 2**i
            for j in range(n):
                layers.append(BasicBlock(cin, cout, 2 if (j == 0 and i > 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.dim = cin

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))
