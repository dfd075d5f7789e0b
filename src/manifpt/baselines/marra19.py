"""Marra19: a CNN that learns new generators incrementally (iCaRL-style exemplar memory + distillation).

Marra et al. (WIFS 2019) adapt iCaRL (Rebuffi et al., CVPR 2017) to GAN-image detection and
attribution, so that a deployed detector can learn a new generator without forgetting the old ones
and without keeping all their data. Here the K training sources arrive in ``n_tasks`` groups in a
seeded random order. Each step trains the network on the new sources' images plus a fixed-size
memory of exemplars of the old sources, with cross-entropy over all sources seen so far and a
knowledge-distillation loss that keeps the old sources' logits close to those of the network before
the step. After each step the memory (``memory_size`` images in total, ``memory_size // seen`` per
source) is rebuilt: old sources' exemplar lists are truncated, new sources' exemplars are chosen by
herding on the L2-normalised penultimate features (each next exemplar moves the exemplar mean
closest to the source's feature mean). Prediction is iCaRL's nearest-mean-of-exemplars rule
(``classifier="nme"``) or the softmax head (``classifier="softmax"``). ``n_tasks=1`` is plain
supervised training (one step, no distillation). ``n_tasks`` is capped at K − 1, because a first step
with a single source has nothing to learn under softmax cross-entropy; ``n_tasks = K − 1`` learns two
sources first and then one per step, like the paper's protocol of adding one GAN at a time.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..estimator import store_params
from ..nn.nets import Net, build_net
from ._cnn import CNNBaseline, chw_shape, layer_inputs, net_arch, predict_proba
from .base import register_baseline
from .yu19 import add_aux_loss

#: NME probabilities: softmax(−‖φ̂ − μ̂_k‖² / T) over unit-norm features and class means (‖·‖² ∈ [0, 4])
NME_TEMPERATURE = 0.1


def _py(v: Any) -> Any:
    """A NumPy scalar label as the plain Python value (JSON-friendly); other objects unchanged."""
    return v.item() if isinstance(v, np.generic) else v


def herding(features: np.ndarray, m: int) -> np.ndarray:
    """iCaRL's herding: indices (in selection order) of ``m`` rows whose running mean tracks the mean of all rows.

    Rows are L2-normalised first. Step k picks the unused row ``i`` minimising
    ``‖μ − (s + φ_i)/k‖``, ``s`` being the sum of the k − 1 rows picked before. ``m`` ≥ the number of
    rows returns every row (still in herding order).
    """
    phi = np.asarray(features, np.float64)
    phi = phi / np.maximum(np.linalg.norm(phi, axis=1, keepdims=True), 1e-12)
    m = min(int(m), len(phi))
    mu = phi.mean(axis=0)
    chosen: list[int] = []
    used = np.zeros(len(phi), bool)
    s = np.zeros_like(mu)
    for k in range(1, m + 1):
        d = np.linalg.norm(mu[None] - (s[None] + phi) / k, axis=1)
        d[used] = np.inf
        i = int(d.argmin())
        chosen.append(i)
        used[i] = True
        s += phi[i]
    return np.asarray(chosen, np.int64)


class _IncrementalStep(nn.Module):
    """The network during one step: logits of the ``n_seen`` sources seen so far, plus distillation in training.

    The frozen network of the previous step is kept outside the module tree (so that ``train_cnn``
    neither optimises it nor switches it to training mode).
    """

    def __init__(self, net: Net, n_seen: int, old: Net | None, n_old: int, temperature: float, weight: float):
        super().__init__()
        self.net, self.n_seen, self.n_old = net, n_seen, n_old
        self._old = (old,)
        self.temperature, self.weight = temperature, weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)[:, :self.n_seen]
        old = self._old[0]
        if self.training and old is not None and self.n_old > 0 and self.weight > 0:
            t = self.temperature
            with torch.no_grad():
                target = F.softmax(old(x)[:, :self.n_old] / t, dim=1)
            kd = F.kl_div(F.log_softmax(logits[:, :self.n_old] / t, dim=1), target, reduction="batchmean") * t * t
            logits = add_aux_loss(logits, self.weight * kd)
        return logits


@register_baseline("marra19")
class Marra19(CNNBaseline):
    """Incremental learning of the sources (iCaRL-style) with a small CIFAR ResNet; NME or softmax prediction.

    Attributes after ``fit``: ``class_order_`` (the sources in the order they were learned),
    ``exemplar_indices_`` (source → indices of its exemplars among the training images, in herding
    order: the final memory), ``steps_`` (one record per step: sources added, training set size,
    memory size after the step, best epoch) and ``class_means_`` (K×F unit-norm exemplar means of
    the final network's features, ``classes_`` order).
    """

    array_inputs = True
    paper = """F. Marra, C. Saltori, G. Boato, L. Verdoliva. Incremental learning for the detection and
    classification of GAN-generated images. IEEE International Workshop on Information Forensics and Security (WIFS)
    2019, pp. 1-6; arXiv:1910.01568."""
    deviations = """
    - Backbone: the small CIFAR ResNet of ManiFPT's released attributor (16/32/64 channels, `depth` basic blocks per
      stage) trained from scratch, instead of the paper's XceptionNet.
    - Attribution of K sources that arrive in `n_tasks` groups in a seeded random order (default 2 steps, at most K −
      1); the paper's protocol adds one new GAN at a time to a real-vs-fake detector/classifier.
    - Loss: softmax cross-entropy over the sources seen so far plus knowledge distillation (KL divergence at temperature
      2, weight `distill_weight`) on the old sources' logits, instead of iCaRL's sigmoid binary cross-entropy with the
      old network's outputs as targets.
    - Prediction: nearest mean of exemplars (iCaRL) by default, on L2-normalised penultimate features with unit-norm
      exemplar means, without the flipped-image feature averaging; probabilities are softmax(−distance²/0.1).
      classifier='softmax' uses the network's head instead.
    - AdamW with early stopping on the cross-entropy of a stratified 20 % validation split of each step's training data
      (new images + exemplars; best epoch restored) instead of iCaRL's SGD schedule; few epochs on CPU (max_epochs=15
      per step). No data augmentation.
    - As a learner on float arrays (artifacts; `manifpt.learners`), inputs are standardised per element with training
      statistics; N×D vectors get the MLP. Given a validation set (`fit(X, y, X_val, y_val)`), each step early-stops on
      its part of the sources seen so far.
    """

    def __init__(self, n_tasks: int = 2, memory_size: int = 2000, classifier: str = "nme", distill_weight: float = 1.0,
                 temperature: float = 2.0, arch: str = "cifar_resnet", depth: int = 2, lr: float = 1e-3,
                 weight_decay: float = 1e-2, batch_size: int = 64, max_epochs: int = 15, patience: int = 4,
                 val_fraction: float = 0.2, device: str | None = None, seed: int = 0):
        store_params(self, locals())

    def _unit_features(self, images: np.ndarray) -> np.ndarray:
        f = layer_inputs(self.model_, self.model_.head, images, transform=self._transform, batch_size=self.batch_size)
        return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)

    def _step_val(self, rank: np.ndarray, n_seen: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The validation set given to ``fit`` restricted to the sources seen so far (internal codes),
        or ``None`` (a split carved from each step's training data)."""
        if self._val is None:
            return None
        X_val, internal = self._val[0], rank[self._val[1]]
        keep = internal < n_seen
        return X_val[keep], internal[keep]

    def _fit_codes(self, images: np.ndarray, codes: np.ndarray) -> None:
        k = len(self.classes_)
        if self.classifier not in ("nme", "softmax"):
            raise ValueError(f"classifier must be 'nme' or 'softmax', got '{self.classifier}'")
        if self.n_tasks < 1:
            raise ValueError(f"n_tasks must be at least 1, got {self.n_tasks}")
        # at most K − 1 steps: a first step with one class would learn nothing under softmax cross-entropy
        self.n_tasks_ = min(int(self.n_tasks), max(1, k - 1))
        if self.memory_size < k:
            raise ValueError(f"memory_size {self.memory_size} leaves no exemplar for some of the {k} classes")
        order = np.random.default_rng(self.seed).permutation(k)  # internal index i ↔ class code order[i]
        rank = np.empty(k, np.int64)
        rank[order] = np.arange(k)
        internal = rank[codes]
        torch.manual_seed(self.seed)
        self.model_ = build_net(net_arch(self.arch, chw_shape(images)), chw_shape(images), k, pretrained=True,
                                depth=self.depth)
        memory: dict[int, np.ndarray] = {}  # internal class → indices into images, herding order
        old: Net | None = None
        self.steps_: list[dict[str, Any]] = []
        for t, group in enumerate(np.array_split(np.arange(k), self.n_tasks_)):
            n_old, n_seen = int(group[0]), int(group[-1]) + 1
            new = np.flatnonzero(np.isin(internal, group))
            idx = np.concatenate([new, *(memory[c] for c in range(n_old))])
            step = _IncrementalStep(self.model_, n_seen, old, n_old, self.temperature, self.distill_weight)
            res = self._train(step, images[idx], internal[idx], seed=self.seed + t, val=self._step_val(rank, n_seen))
            per_class = self.memory_size // n_seen
            for c in range(n_old):
                memory[c] = memory[c][:per_class]
            for c in group:
                members = np.flatnonzero(internal == c)
                memory[int(c)] = members[herding(self._unit_features(images[members]), per_class)]
            self.steps_.append({"step": t, "new_classes": [_py(self.classes_[order[c]]) for c in group],
                                "n_train": len(idx), "memory": int(sum(len(v) for v in memory.values())),
                                "best_epoch": res.best_epoch, "epochs": len(res.epochs)})
            if t < self.n_tasks_ - 1:
                old = copy.deepcopy(self.model_).eval()
                old.requires_grad_(False)
        self.class_order_ = self.classes_[order]
        self.exemplar_indices_ = {_py(self.classes_[order[c]]): memory[c] for c in range(k)}
        means = np.stack([self._unit_features(images[memory[rank[j]]]).mean(axis=0) for j in range(k)])
        self.class_means_ = (means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)).astype(np.float32)
        self.order_ = order

    def _proba(self, images: np.ndarray) -> np.ndarray:
        k = len(self.classes_)
        if not len(images):
            return np.zeros((0, k))
        self._check_fitted_inputs(images)
        if self.classifier == "softmax":
            p = predict_proba(self.model_, images, transform=self._transform, batch_size=self.batch_size)
            return p[:, self.order_.argsort()]  # head column i is class code order_[i]
        phi = self._unit_features(images).astype(np.float64)
        mu = self.class_means_.astype(np.float64)
        d2 = (phi ** 2).sum(1, keepdims=True) + (mu ** 2).sum(1)[None] - 2 * phi @ mu.T  # ‖φ − μ_k‖², no N×K×F array
        z = -d2 / NME_TEMPERATURE
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)
