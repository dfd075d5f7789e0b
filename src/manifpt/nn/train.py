"""The one training loop of every classifier manifpt trains, and the parts all its loops share.

``fit_classifier`` trains the attributor and the five CNN baselines: AdamW on cross-entropy,
mini-batches in a seeded order (indices sorted within a batch, so memory-mapped artifacts are read
in file order), precise batch norm after every epoch, early stopping with the best epoch's weights
restored, bf16 autocast on CUDA. What differs between them is two fields of ``TrainConfig``:
``schedule`` (the attributor warms up and anneals, one-cycle; the baselines keep their papers'
constant rate) and ``monitor`` (the attributor keeps the epoch of best validation accuracy, ties
broken by loss; the baselines the epoch of least validation loss).

Inputs go through a ``transform`` (a mini-batch of the raw array → the network's input on the
device), because the raw arrays are often far smaller than the network's input (uint8 images vs a
3×256×256 co-occurrence stack of 768 KiB per image) or are memory-mapped artifact stores.

``train_steps`` is the fixed-step loop (no epochs, no labels) of the self-supervised encoder and of
the real-set autoencoder.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..progress import progress
from ..runtime import default_device

#: mini-batch of the raw array → network input on the given device
Transform = Callable[[np.ndarray, torch.device], torch.Tensor]


def as_float_tensor(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    """The default transform: the batch as float32, unchanged, on ``device``."""
    return torch.as_tensor(np.asarray(batch, np.float32)).to(device)


@dataclass(frozen=True)
class TrainConfig:
    """The recipe of ``fit_classifier``; see the module docstring for ``schedule`` and ``monitor``."""

    lr: float = 1e-3
    weight_decay: float = 1e-2
    batch_size: int = 64
    epochs: int = 40
    patience: int = 6  # epochs without improvement before stopping
    schedule: Literal["constant", "onecycle"] = "constant"
    monitor: Literal["loss", "accuracy"] = "loss"
    max_seconds: float | None = None  # stop after the epoch that passes this training time
    eval_batch_size: int = 512


@dataclass
class History:
    """One record per epoch (train_loss, train_acc, val_loss, val_acc), the kept epoch, the seconds spent."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    seconds: float = 0.0

    @property
    def best(self) -> dict[str, float]:
        """The record of the epoch whose weights were kept."""
        return self.epochs[self.best_epoch] if self.best_epoch >= 0 else {}


def autocast(device: torch.device) -> torch.autocast:
    """bf16 autocast on CUDA (the losses are computed in float32), a no-op elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).float()


@torch.inference_mode()
def apply(model: nn.Module, X: np.ndarray, fn: Callable[[nn.Module, torch.Tensor], torch.Tensor] = _logits, *,
          transform: Transform = as_float_tensor, batch_size: int = 512, device: torch.device | None = None,
          width: int = 0) -> np.ndarray:
    """``fn(model, input batch)`` (default: float32 logits) over ``X`` in eval mode, in batches, on
    the CPU; an empty ``X`` gives a 0×``width`` array."""
    model.eval()
    device = device or next(model.parameters()).device
    out = []
    for lo in range(0, len(X), batch_size):
        xb = transform(X[lo:lo + batch_size], device)
        with autocast(device):
            out.append(fn(model, xb).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, width), np.float32)


def layer_inputs(model: nn.Module, layer: nn.Module, X: np.ndarray, *, transform: Transform = as_float_tensor,
                 batch_size: int = 512) -> np.ndarray:
    """float32 N×F: what ``layer`` receives (flattened), e.g. the penultimate features when it is the head."""
    seen: list[torch.Tensor] = []

    def fn(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        m(x)
        return seen.pop().flatten(1).float()

    handle = layer.register_forward_hook(lambda _m, inp, _out: seen.append(inp[0]))
    try:
        return apply(model, X, fn, transform=transform, batch_size=batch_size)
    finally:
        handle.remove()


def fit_classifier(model: nn.Module, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None,
                   y_val: np.ndarray | None = None, *, config: TrainConfig, transform: Transform = as_float_tensor,
                   device: torch.device | None = None, seed: int = 0, show_progress: bool = False,
                   desc: str = "train", rank: int = 0, world: int = 1) -> History:
    """Train ``model`` (K logits) on integer labels ``y`` in 0..K−1; return its ``History``.

    Early stopping watches (X_val, y_val) when given and non-empty, else the training metrics.
    ``model`` is left in eval mode on ``device`` (default: CUDA when present) with the kept weights.

    Data-parallel (``world`` > 1, inside an initialised ``torch.distributed`` process group, e.g. a
    Ray Train worker): every rank draws the same batch order and trains on its share of each batch
    (``rank::world``) through ``DistributedDataParallel``, whose averaged gradients keep the replicas
    identical; batch-norm recalibration and validation then see the same weights and data on every
    rank, so every rank takes the same early-stopping decisions without talking to the others.
    """
    cfg = config
    device = default_device(device)
    y = np.asarray(y, np.int64)
    has_val = X_val is not None and y_val is not None and len(X_val) > 0
    yv = torch.as_tensor(np.asarray(y_val, np.int64)) if has_val else None
    gen = torch.Generator().manual_seed(seed)
    model.to(device)
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = None
    if cfg.schedule == "onecycle":
        steps = cfg.epochs * max(1, math.ceil(len(X) / cfg.batch_size))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=steps, pct_start=0.1)
    history = History()
    best_key: tuple[float, ...] = (-math.inf,)
    best_state, since = None, 0
    bn_idx = batchnorm_subset(len(X), seed)
    t0 = time.perf_counter()
    bar = progress(range(cfg.epochs), desc=desc, disable=not show_progress)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(X), generator=gen).numpy()
        tot, correct, n = 0.0, 0, 0
        for lo in range(0, len(order), cfg.batch_size):
            idx = np.sort(order[lo:lo + cfg.batch_size])
            if len(idx) < 2 * world and len(order) > 1:
                continue  # a (share of a) batch of one breaks batch norm; its samples are seen next epoch
            idx = idx[rank::world]
            xb = transform(X[idx], device)
            yb = torch.from_numpy(y[idx]).to(device)
            with autocast(device):
                logits = net(xb)
            loss = F.cross_entropy(logits.float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            tot += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            n += len(idx)
        if world > 1:  # the epoch's training metrics over every rank's share
            tot, correct, n = _all_reduce_sum([tot, correct, n], device)
        with autocast(device):
            recalibrate_batchnorm(model, (transform(X[bn_idx[lo:lo + cfg.batch_size]], device)
                                          for lo in range(0, len(bn_idx), cfg.batch_size)))
        rec = {"epoch": epoch, "train_loss": tot / max(n, 1), "train_acc": correct / max(n, 1)}
        if has_val:
            logits_v = torch.from_numpy(apply(model, X_val, transform=transform, batch_size=cfg.eval_batch_size,
                                              device=device))
            rec["val_acc"] = float((torch.softmax(logits_v, 1).argmax(1) == yv).float().mean())
            rec["val_loss"] = float(F.cross_entropy(logits_v, yv))
        part = "val" if has_val else "train"
        key = ((rec[f"{part}_acc"], -rec[f"{part}_loss"]) if cfg.monitor == "accuracy"
               else (-rec[f"{part}_loss"],))
        history.epochs.append(rec)
        bar.set_postfix({k: f"{v:.3f}" for k, v in rec.items() if k != "epoch"})
        if key > best_key:
            best_key, since, history.best_epoch = key, 0, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            since += 1
        stop = since >= cfg.patience or bool(cfg.max_seconds and time.perf_counter() - t0 > cfg.max_seconds)
        if world > 1:  # clocks differ between ranks: rank 0 decides for all
            stop = bool(_broadcast_flag(stop, device))
        if stop:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    history.seconds = time.perf_counter() - t0
    model.eval()
    return history


def _all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _broadcast_flag(flag: bool, device: torch.device) -> bool:
    import torch.distributed as dist

    t = torch.tensor([int(flag)], device=device)
    dist.broadcast(t, 0)
    return bool(t.item())


#: training samples whose batch statistics replace batch norm's running averages after each epoch
BN_SAMPLES = 1024


def batchnorm_subset(n: int, seed: int) -> np.ndarray:
    """A fixed, sorted subset of ≤ ``BN_SAMPLES`` of ``range(n)`` for ``recalibrate_batchnorm``, drawn once per fit."""
    return np.sort(np.random.default_rng(seed).permutation(n)[:BN_SAMPLES])


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> bool:
    """Re-estimate every batch-norm layer's running statistics as the plain average over ``batches``.

    Why: early stopping evaluates the network after every epoch, in eval mode, on running statistics
    that an exponential average (momentum 0.1) has built from the last few dozen steps, while the
    weights changed under them. On small training sets (a few steps an epoch) those statistics lag
    far behind and the network predicts a single class on validation data while it fits the training
    data (seen on FREQ artifacts: validation accuracy exactly at chance for five epochs, then early
    stopping). Averaging fresh batch statistics of the current weights ("precise BN", Wu & Johnson
    2021) removes the lag. Batches of one sample are skipped. Returns whether the model has batch norm.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
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


def train_steps(params: Iterable[nn.Parameter], step_loss: Callable[[], torch.Tensor], *, steps: int, lr: float,
                weight_decay: float, desc: str, show: bool = True, fmt: str = "{:.4f}") -> None:
    """``steps`` optimisation steps of ``step_loss()`` (it draws its own batch): AdamW with a one-cycle
    schedule (10 % warm-up), the loss shown on a progress bar. The recipe of the real-set
    autoencoder and of the SSL encoder."""
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

