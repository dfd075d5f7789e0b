"""``manifpt-fused``: late fusion of calibrated probabilities, every choice made on the validation split.

The members are methods of the same run (``evaluate.ArrayMethod``: a learner on the artifacts of one
space and estimator of x*, the raw control included; ``manifpt.learners``), each trained on the
training part of a split and early-stopped on its validation part. On the validation part, each
member's probabilities are calibrated by temperature scaling (Guo et al., ICML 2017: one scalar T
minimising the negative log-likelihood), then members are combined by greedy ensemble selection with
replacement (Caruana et al., ICML 2004): starting from the best member, add the member (possibly again)
that most lowers the validation NLL of the averaged calibrated probabilities, until none does. The
selection counts are the weights. So the fusion chooses its inputs and its learner on validation
only, and the test split is classified once, by the fused probabilities.

Caveat stated where the numbers are: the validation split also early-stopped the members, so their
validation probabilities are slightly optimistic (the same for every member). Selection by NLL
rather than accuracy keeps this small: NLL is smooth and rewards calibrated confidence, not a few
lucky argmaxes on ~20 validation images per class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from .cache import write_json
from .evaluate import ArrayMethod

#: greedy selection stops after this many additions (Caruana et al. use a few tens of rounds)
MAX_ROUNDS = 25


def _log_proba(proba: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(proba, np.float64), 1e-12, None))


def fit_temperature(log_p: np.ndarray, y: np.ndarray) -> float:
    """The temperature T > 0 minimising the NLL of softmax(log p / T) on codes ``y`` (in [e⁻³, e³])."""
    def nll(log_t: float) -> float:
        return -float(log_softmax(log_p / np.exp(log_t), axis=1)[np.arange(len(y)), y].mean())
    return float(np.exp(minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded").x))


def calibrated(log_p: np.ndarray, temperature: float) -> np.ndarray:
    return np.exp(log_softmax(log_p / temperature, axis=1))


def ensemble_selection(probas: Sequence[np.ndarray], y: np.ndarray, max_rounds: int = MAX_ROUNDS) -> np.ndarray:
    """Caruana's greedy selection with replacement by mean NLL; returns the selection counts."""
    def nll(p: np.ndarray) -> float:
        return -float(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean())
    counts = np.zeros(len(probas), np.int64)
    scores = [nll(p) for p in probas]
    best = int(np.argmin(scores))
    counts[best], total, current = 1, probas[best].copy(), scores[best]
    for _ in range(max_rounds - 1):
        n = counts.sum()
        trial = [nll((total + p) / (n + 1)) for p in probas]
        j = int(np.argmin(trial))
        if trial[j] >= current - 1e-9:
            break
        counts[j] += 1
        total, current = total + probas[j], trial[j]
    return counts


@dataclass
class FusedMethod:
    """``manifpt-fused``: the members' calibrated probabilities, averaged with weights chosen on validation.

    ``space`` names the members' spaces (``freq+rgb``); the members' ``keep_fits`` is set, so that
    the fusion reuses their fits of the same seed and split (``ArrayMethod.fitted``) where they ran
    first in the same process, and trains them itself otherwise."""

    members: list[ArrayMethod]
    name: str = "manifpt-fused"
    space: str = ""
    max_rounds: int = MAX_ROUNDS
    perturbed: dict[str, tuple[np.ndarray, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("fusion needs at least one member")
        self.space = self.space or "+".join(sorted({m.space for m in self.members}))
        for m in self.members:
            m.keep_fits = True
        for name in self.members[0].perturbed:  # the members' perturbed inputs, side by side
            idx = self.members[0].perturbed[name][0]
            self.perturbed[name] = (idx, [m.perturbed[name][1] for m in self.members])

    def fit(self, train: np.ndarray, val: np.ndarray, labels: np.ndarray, seed: int) -> None:
        self.models_ = [m.fitted(train, val, labels, seed) for m in self.members]
        self.classes_ = sorted(set(np.asarray(labels).astype(str).tolist()))
        y = np.searchsorted(self.classes_, np.asarray(labels)[val].astype(str))
        logs = [self._member_log_proba(k, m.X[val]) for k, m in enumerate(self.members)]
        self.temperatures_ = [fit_temperature(lp, y) for lp in logs]
        self.counts_ = ensemble_selection([calibrated(lp, t) for lp, t in zip(logs, self.temperatures_, strict=True)],
                                          y, self.max_rounds)

    def _member_log_proba(self, k: int, inputs: np.ndarray) -> np.ndarray:
        """Member ``k``'s log-probabilities, columns in ``classes_`` order (every member saw every class)."""
        model = self.models_[k]
        cols = np.searchsorted(np.asarray(model.classes_).astype(str), self.classes_)
        return _log_proba(model.predict_proba(inputs))[:, cols]

    def predict_inputs(self, inputs: Sequence[np.ndarray]) -> tuple[np.ndarray, list[str]]:
        """Fused probabilities of one input array per member (in ``members`` order)."""
        w = self.counts_ / self.counts_.sum()
        p = sum(w[k] * calibrated(self._member_log_proba(k, inputs[k]), self.temperatures_[k])
                for k in np.flatnonzero(self.counts_))
        return np.asarray(p), list(self.classes_)

    def predict_proba(self, idx: np.ndarray) -> tuple[np.ndarray, list[str]]:
        return self.predict_inputs([m.X[idx] for m in self.members])

    def features(self, idx: np.ndarray) -> np.ndarray:
        """The selected members' learned features side by side (each standardised, so none dominates)."""
        parts = []
        for k in np.flatnonzero(self.counts_):
            f = np.asarray(self.models_[k].transform(self.members[k].X[idx]), np.float64)
            parts.append((f - f.mean(0)) / (f.std(0) + 1e-12))
        return np.concatenate(parts, axis=1).astype(np.float32)

    def selection(self) -> list[dict[str, Any]]:
        """Each member's label, weight and temperature (what ``save`` writes)."""
        total = int(self.counts_.sum())
        return [{"method": m.name, "space": m.space, "weight": int(c) / total, "temperature": t}
                for m, c, t in zip(self.members, self.counts_, self.temperatures_, strict=True)]

    def save(self, directory: Path) -> None:
        write_json(Path(directory) / "fusion.json", {"members": self.selection(), "rule": "ensemble selection "
                   "(Caruana et al. 2004) by validation NLL over temperature-scaled probabilities"})
