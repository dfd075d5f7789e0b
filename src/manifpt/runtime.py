"""Device choice and reproducibility switches shared by every torch stage."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def default_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when present, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextmanager
def full_float32() -> Iterator[None]:
    """Matrix products in IEEE float32 (TF32 off): the error bounds of the exact search assume it."""
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator for data order."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def to_float_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 N×H×W(×C) → float32 N×C×H×W in [0, 1] on ``device``."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return x.float().div_(255.0)
