"""Seeds × splits × methods: the evaluation protocol shared by ``fit``, ``compare`` and experiments.

A *method* is anything that can be trained on some items and predict others (``Method``
protocol): ManiFPT in one space (an ``Attributor`` on artifacts) or a prior fingerprint method (a
baseline on images). ``evaluate`` trains every method on the same stratified split per seed, so
every comparison is on identical data, and returns per-seed metrics plus the aggregated rows of
``results.json``: ``{"task", "target", "method", "space", "metric", "mean", "std", "n_seeds", "values"}``
(``values``: per seed; plus ``seeds`` where known, and ``perturbation`` on rows measured on perturbed
copies of the test split, ``manifpt.robustness``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .executor import Executor, current
from .metrics import classification_metrics, fd_ratio, kmeans_nmi, mean_std
from .progress import STAGES
from .splits import make_split, subsample


class Method(Protocol):
    """Trainable on item indices; ``name``/``space`` label its rows in the results. ``perturbed``:
    perturbation name → (sorted item indices, the method's inputs of their perturbed images), which
    ``predict_inputs`` classifies (``manifpt.robustness`` fills it)."""

    name: str
    space: str
    perturbed: dict[str, tuple[np.ndarray, Any]]

    def fit(self, train: np.ndarray, val: np.ndarray, labels: np.ndarray, seed: int) -> None: ...
    def predict_proba(self, idx: np.ndarray) -> tuple[np.ndarray, list[str]]: ...
    def predict_inputs(self, inputs: Any) -> tuple[np.ndarray, list[str]]: ...
    def features(self, idx: np.ndarray) -> np.ndarray: ...
    def save(self, directory: Path) -> None: ...


@dataclass
class SeedResult:
    method: str
    space: str
    seed: int
    metrics: dict[str, Any]
    fdr_features: dict[str, float] | None
    test_idx: np.ndarray
    proba: np.ndarray
    classes: list[str]
    features: np.ndarray | None = field(default=None, repr=False)


def evaluate(methods: Sequence[Method], labels: Sequence[str], seeds: Sequence[int],
             fractions: tuple[float, float, float] = (0.6, 0.2, 0.2), out: Path | None = None,
             fdr_max_per_class: int = 500, keep_features: bool = False,
             show_progress: bool = True, executor: Executor | None = None,
             groups: Sequence[str] | None = None) -> list[SeedResult]:
    """Train and test every method on the same per-seed stratified splits (group-aware with
    ``groups``: every group on one side, ``splits.make_split``).

    The (seed, method) jobs are independent (each seeds its own fit), so they run on ``executor``
    (default: the current one): one after another here, as parallel tasks on Ray; same results.
    """
    labels = np.asarray(labels).astype(str)
    run = partial(_run_job, labels=labels, fractions=fractions, out=out, fdr_max_per_class=fdr_max_per_class,
                  keep_features=keep_features, groups=None if groups is None else np.asarray(groups).astype(str))
    jobs = [(s, j) for s in seeds for j in range(len(methods))]
    return (executor or current()).map(run, jobs, shared=tuple(methods), desc="fit" if show_progress else "")


def _run_job(methods: Sequence[Method], job: tuple[int, int], *, labels: np.ndarray,
             fractions: tuple[float, float, float], out: Path | None, fdr_max_per_class: int,
             keep_features: bool, groups: np.ndarray | None = None) -> SeedResult:
    seed, method = job[0], methods[job[1]]
    classes = sorted(set(labels.tolist()))
    split = make_split(labels, fractions, seed, groups)
    with STAGES("train", len(split["train"]) + len(split["val"])):
        method.fit(split["train"], split["val"], labels, seed)
    with STAGES("evaluate", len(split["test"])):
        proba, cls = method.predict_proba(split["test"])
    pred = np.asarray(cls)[proba.argmax(1)]
    metrics = classification_metrics(labels[split["test"]], pred, classes)
    with STAGES("evaluate (perturbed)"):
        metrics["perturbed"] = {}
        for name, (idx, inputs) in getattr(method, "perturbed", {}).items():
            pos = np.searchsorted(idx, split["test"])
            if np.any(pos >= len(idx)) or np.any(idx[np.minimum(pos, len(idx) - 1)] != split["test"]):
                raise ValueError(f"{method.name}: perturbed inputs ({name}) miss test items of seed {seed}")
            p_proba, p_cls = method.predict_inputs(inputs[pos])
            p_metrics = classification_metrics(labels[split["test"]], np.asarray(p_cls)[p_proba.argmax(1)], classes)
            metrics["perturbed"][name] = {k: p_metrics[k] for k in ("accuracy", "macro_f1")}
    with STAGES("evaluate"):
        feats = method.features(split["test"])
        sub = subsample(labels[split["test"]], fdr_max_per_class, seed)
        fdr = fd_ratio(feats[sub], labels[split["test"]][sub], seed) if feats is not None else None
    if out is not None:
        method.save(out / f"{method.name}-{method.space}" / f"seed-{seed}")
    return SeedResult(method.name, method.space, seed, metrics, fdr, split["test"], proba, list(cls),
                      feats if keep_features else None)


def result_rows(results: Sequence[SeedResult], task: str, target: str) -> list[dict[str, Any]]:
    """Aggregate per-seed results into results.json rows (mean ± sample std over seeds)."""
    rows = []
    keys = sorted({(r.method, r.space) for r in results})
    for method, space in keys:
        rs = [r for r in results if (r.method, r.space) == (method, space)]
        metrics: dict[str, list[float]] = {"accuracy": [r.metrics["accuracy"] for r in rs],
                                           "macro_f1": [r.metrics["macro_f1"] for r in rs]}
        if all(r.fdr_features for r in rs):
            metrics["fd_ratio_features"] = [r.fdr_features["ratio"] for r in rs]
        seeds = [r.seed for r in rs]
        for metric, values in metrics.items():
            rows.append(seed_row(task, target, method, space, metric, values, seeds))
        for name in rs[0].metrics.get("perturbed", {}):
            for metric in ("accuracy", "macro_f1"):
                rows.append(seed_row(task, target, method, space, metric,
                                     [r.metrics["perturbed"][name][metric] for r in rs], seeds, perturbation=name))
    return rows


def row(task: str, target: str, method: str, space: str, metric: str, mean: float, std: float,
        n_seeds: int, perturbation: str | None = None, values: Sequence[float] | None = None,
        seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """One results.json row. ``values``: the per-seed values (in ``seeds`` order, when the seeds are
    known), so that methods can be compared seed by seed (``metrics.paired_difference``); required
    with more than one seed, ``[mean]`` for a single computation. ``perturbation`` (e.g. ``jpeg:75``)
    only on rows measured on perturbed test images."""
    if values is None and n_seeds > 1:
        raise ValueError(f"{task} {method} {metric}: a row over {n_seeds} seeds needs its per-seed values")
    out = {"task": task, "target": target, "method": method, "space": space, "metric": metric,
           "mean": float(mean), "std": float(std), "n_seeds": int(n_seeds),
           "values": [float(mean)] if values is None else [float(v) for v in values]}
    if seeds is not None:
        out["seeds"] = [int(x) for x in seeds]
    return out if perturbation is None else {**out, "perturbation": perturbation}


def seed_row(task: str, target: str, method: str, space: str, metric: str, values: Sequence[float],
             seeds: Sequence[int] | None = None, perturbation: str | None = None) -> dict[str, Any]:
    """``row`` from per-seed values: mean, sample std, their number, and the values themselves."""
    m, s = mean_std(values)
    return row(task, target, method, space, metric, m, s, len(values), perturbation, values, seeds)


def artifact_structure_rows(artifacts: np.ndarray, table: list[dict[str, str]], target: str, task: str,
                            space: str, factors: Sequence[str], seed: int = 0, max_per_class: int = 500,
                            method: str = "manifpt") -> list[dict[str, Any]]:
    """FD ratio of the artifacts themselves (target classes) and k-means NMI per design factor."""
    labels = np.array([r[target] for r in table])
    sub = subsample(labels, max_per_class, seed)
    x = np.asarray(artifacts[sub], np.float32)
    fdr = fd_ratio(x, labels[sub], seed)
    rows = [row(task, target, method, space, "fd_ratio_artifacts", fdr["ratio"], 0.0, 1)]
    for f in factors:
        values = np.array([r.get(f, "") for r in table])[sub]
        if len(set(values.tolist())) >= 2 and "" not in set(values.tolist()):
            rows.append(row(task, f, method, space, "nmi_kmeans", kmeans_nmi(x, values, seed), 0.0, 1))
    return rows


@dataclass
class ArrayMethod:
    """ManiFPT in one space: an ``Attributor`` on precomputed artifacts (or any learner of
    ``manifpt.learners`` on any feature array)."""

    name: str
    space: str
    X: np.ndarray
    input_shape: tuple[int, ...] | None
    make: Callable[[int], Any]  # seed -> unfitted Attributor
    model: Any = None
    X_fit: np.ndarray | None = None  # training inputs where they differ from X (augmented, ``robustness``)
    perturbed: dict[str, tuple[np.ndarray, Any]] = field(default_factory=dict)
    #: keep every fitted model by (seed, split), so that a method combining this one (``manifpt.fusion``)
    #: reuses the fit of the same seed and split instead of training it again
    keep_fits: bool = False
    _fits: dict[tuple[int, str], Any] = field(default_factory=dict, init=False, repr=False)

    def fit(self, train: np.ndarray, val: np.ndarray, labels: np.ndarray, seed: int) -> None:
        self.model = self.fitted(train, val, labels, seed)

    def fitted(self, train: np.ndarray, val: np.ndarray, labels: np.ndarray, seed: int) -> Any:
        """The model trained on ``train`` (early-stopped on ``val``) with ``seed``; from ``keep_fits``'
        memory when this seed and split were fitted before."""
        import hashlib

        X = self.X if self.X_fit is None else self.X_fit
        if not self.keep_fits:  # nothing combines this method: no key to hash, nothing kept
            return self.make(seed).fit(X[train], labels[train], X[val], labels[val])
        split = b"".join(np.ascontiguousarray(a).tobytes() for a in (train, val, labels))
        key = (seed, hashlib.sha1(split).hexdigest())
        if key not in self._fits:
            self._fits[key] = self.make(seed).fit(X[train], labels[train], X[val], labels[val])
        return self._fits[key]

    def predict_proba(self, idx: np.ndarray) -> tuple[np.ndarray, list[str]]:
        return self.predict_inputs(self.X[idx])

    def predict_inputs(self, inputs: np.ndarray) -> tuple[np.ndarray, list[str]]:
        return self.model.predict_proba(inputs), self.model.classes_.tolist()

    def features(self, idx: np.ndarray) -> np.ndarray:
        return self.model.transform(self.X[idx])

    def save(self, directory: Path) -> None:
        self.model.save(directory)


def method_label(method: str, space: str) -> str:
    """A results row's display name: ``ManiFPT-RGB``, ``ManiFPT-RGB[raw]@marra19``, a baseline's own name."""
    if method.startswith("manifpt"):
        return f"ManiFPT-{space.upper()}" + method.removeprefix("manifpt")
    return method
