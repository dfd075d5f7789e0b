"""Device choice and reproducibility switches shared by every torch stage."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
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


#: training samples whose batch statistics replace batch norm's running averages after each epoch
BN_SAMPLES = 1024


def batchnorm_subset(train: int | np.ndarray, seed: int) -> np.ndarray:
    """A fixed, sorted subset of ≤ ``BN_SAMPLES`` training indices (of ``range(train)`` or of the
    index array ``train``) for ``recalibrate_batchnorm``, drawn once per fit."""
    return np.sort(np.random.default_rng(seed).permutation(train)[:BN_SAMPLES])


@torch.no_grad()
def recalibrate_batchnorm(model: torch.nn.Module, batches: Iterable[torch.Tensor]) -> bool:
    """Re-estimate every batch-norm layer's running statistics as the plain average over ``batches``.

    Why: early stopping evaluates the network after every epoch, in eval mode, on running statistics
    that an exponential average (momentum 0.1) has built from the last few dozen steps, while the
    weights changed under them. On small training sets (a few steps an epoch) those statistics lag
    far behind and the network predicts a single class on validation data while it fits the training
    data (seen on FREQ artifacts: validation accuracy exactly at chance for five epochs, then early
    stopping). Averaging fresh batch statistics of the current weights ("precise BN", Wu & Johnson
    2021) removes the lag. Batches of one sample are skipped. Returns whether the model has batch norm.
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return False
    momenta = [m.momentum for m in bns]
    saved = [{k: v.clone() for k, v in m.state_dict().items()} for m in bns]
    was_training = model.training
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    used = 0
    try:
        for xb in batches:
            if len(xb) > 1:
                model(xb)
                used += 1
    finally:
        for m, mom, state in zip(bns, momenta, saved, strict=True):
            m.momentum = mom
            if not used:  # nothing to average: keep the old statistics
                m.load_state_dict(state)
        model.train(was_training)
    return True


def train_steps(params: Iterable[torch.nn.Parameter], step_loss: Callable[[], torch.Tensor], *, steps: int, lr: float,
                weight_decay: float, desc: str, show: bool = True, fmt: str = "{:.4f}") -> None:
    """``steps`` optimisation steps of ``step_loss()`` (it draws its own batch): AdamW with a one-cycle
    schedule (10 % warm-up), the loss shown on a progress bar. The recipe of the real-set
    autoencoder and of the SSL encoder."""
    from .progress import progress

    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    bar = progress(range(steps), desc=desc, disable=not show)
    for _ in bar:
        loss = step_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=fmt.format(loss.item()))
