"""Evaluation metrics of the paper: accuracy (mean ± std), F1, recall, confusion, FD ratio, NMI.

Fréchet distances are computed without a matrix square root of a product: for PSD S1, S2 the
eigenvalues of S1·S2 are the squared singular values of S1^½·S2^½, and for sample covariances
S = XᵀX/(n−1) (X centred) also of X1·X2ᵀ/√((n1−1)(n2−1)). So Tr (S1 S2)^½ is a nuclear norm,
computed in whichever space (samples or features) is smaller: exact, real-valued and fast for the
high-dimensional, few-sample features of per-class artifact sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import confusion_matrix, f1_score, normalized_mutual_info_score, recall_score


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    v = np.asarray(values, np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def classification_metrics(y_true: Sequence, y_pred: Sequence, labels: Sequence) -> dict:
    """Accuracy, macro-F1, per-class recall and the confusion matrix (rows: true, columns: predicted)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = list(labels)
    return {
        "accuracy": float((y_true == y_pred).mean()),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "recall": dict(zip(labels, recall_score(y_true, y_pred, labels=labels, average=None,
                                                zero_division=0).tolist(), strict=True)),
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "labels": labels,
    }


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of feature rows (float64)."""
    f = np.asarray(features, np.float64)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """FD between N(mu1, s1) and N(mu2, s2): ‖mu1 − mu2‖² + Tr(s1 + s2 − 2 (s1 s2)^½)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(s1, np.float64), np.asarray(s2, np.float64)
    cross = np.linalg.svd(_psd_sqrt(s1) @ _psd_sqrt(s2), compute_uv=False).sum()
    return float(max(0.0, ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * cross))


def frechet_distance_features(x1: np.ndarray, x2: np.ndarray) -> float:
    """FD between the Gaussians fitted to two feature sets (rows = samples; unbiased covariances)."""
    x1, x2 = np.asarray(x1, np.float64), np.asarray(x2, np.float64)
    n1, n2, d = len(x1), len(x2), x1.shape[1]
    if n1 < 2 or n2 < 2:
        raise ValueError(f"need at least 2 samples per set, got {n1} and {n2}")
    mu1, mu2 = x1.mean(0), x2.mean(0)
    c1, c2 = x1 - mu1, x2 - mu2
    tr1, tr2 = (c1**2).sum() / (n1 - 1), (c2**2).sum() / (n2 - 1)
    if n1 * n2 <= d * d:  # sample space: Tr (S1 S2)^½ = ‖X1 X2ᵀ‖_* / √((n1−1)(n2−1))
        cross = np.linalg.svd(c1 @ c2.T, compute_uv=False).sum() / np.sqrt((n1 - 1) * (n2 - 1))
    else:  # feature space
        s1, s2 = c1.T @ c1 / (n1 - 1), c2.T @ c2 / (n2 - 1)
        cross = np.linalg.svd(_psd_sqrt(s1) @ _psd_sqrt(s2), compute_uv=False).sum()
    return float(max(0.0, ((mu1 - mu2) ** 2).sum() + tr1 + tr2 - 2 * cross))


def fd_ratio(features: np.ndarray, labels: Sequence, seed: int = 0) -> dict:
    """FD ratio (paper App. F.4; Yu et al. 2019): mean inter-class FD / mean intra-class FD.

    Intra-class FD: each class's features split at random into two disjoint halves of equal size;
    FD between the halves, averaged over classes (classes under 4 samples are skipped; NaN if none).
    Inter-class FD: FD between every pair of different classes, averaged over pairs.
    """
    features = np.asarray(features, np.float64).reshape(len(features), -1)
    labels = np.asarray(labels)
    classes = sorted(set(labels.tolist()))
    if len(classes) < 2:
        raise ValueError("FD ratio needs at least two classes")
    rng = np.random.default_rng(seed)
    groups = {c: features[labels == c] for c in classes}
    intra = []
    for c in classes:
        g = groups[c][rng.permutation(len(groups[c]))]
        h = len(g) // 2
        if h >= 2:  # a class with fewer than 4 samples cannot be split into two Gaussians
            intra.append(frechet_distance_features(g[:h], g[h:2 * h]))
    big = [c for c in classes if len(groups[c]) >= 2]
    inter = [frechet_distance_features(groups[a], groups[b]) for a, b in combinations(big, 2)]
    if not intra or not inter:
        return {"intra": float("nan"), "inter": float("nan"), "ratio": float("nan")}
    mi, me = float(np.mean(intra)), float(np.mean(inter))
    return {"intra": mi, "inter": me, "ratio": me / mi if mi > 0 else float("inf")}


def kmeans_nmi(features: np.ndarray, labels: Sequence, seed: int = 0, n_init: int = 10) -> float:
    """NMI between k-means clusters of ``features`` (k = number of label values) and the labels."""
    labels = np.asarray(labels)
    k = len(set(labels.tolist()))
    clusters = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(
        np.asarray(features, np.float64).reshape(len(features), -1))
    return float(normalized_mutual_info_score(labels, clusters))


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean of per-seed values and its ``confidence`` interval from the t distribution with n − 1
    degrees of freedom: (mean, low, high). The one place the reports' intervals come from (bars of
    ``figures.accuracy_figure``, ``paired_difference``). One value (or none) bounds nothing: (−∞, ∞).
    """
    from scipy import stats

    v = np.asarray(values, np.float64)
    n = len(v)
    mean = float(v.mean()) if n else float("nan")
    if n < 2:
        return mean, -np.inf, np.inf
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * float(v.std(ddof=1)) / np.sqrt(n)
    return mean, mean - half, mean + half


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Method A vs method B on the same splits (one value per seed, in the same seed order).

    Returns the mean difference A − B, its ``confidence`` interval from the t distribution with n − 1
    degrees of freedom (the seeds' differences are the sample), the two-sided paired t-test p-value
    and the two-sided exact sign-test p-value (ties dropped; it assumes nothing about the
    differences' distribution). With identical differences the t-test is undefined (p = 0 if they
    are not 0, 1 if they are), and with one seed nothing can be said (p = 1, an unbounded interval).
    Pairing matters: seeds share splits, so the methods' seed-to-seed swings largely cancel.
    """
    from scipy import stats

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"paired values need the same length (got {a.shape} and {b.shape})")
    d = a - b
    n = len(d)
    mean, low, high = mean_ci(d, confidence)
    nonzero = d[d != 0]
    sign_p = float(stats.binomtest(int((nonzero > 0).sum()), len(nonzero)).pvalue) if len(nonzero) else 1.0
    if n < 2:
        t_p = 1.0
    elif d.std(ddof=1) == 0:
        t_p = 1.0 if mean == 0 else 0.0
    else:
        t_p = float(stats.ttest_rel(a, b).pvalue)
    return {"n": n, "mean": mean, "ci_low": low, "ci_high": high, "t_p": t_p, "sign_p": sign_p}


def by_seed(r: dict[str, Any]) -> dict[int, float]:
    """A row's per-seed values by seed (by position for rows that do not name their seeds)."""
    return dict(zip(r.get("seeds", range(len(r["values"]))), r["values"], strict=True))


Key = tuple[str, str]  # (method, space)


def paired_differences(rows: Sequence[dict[str, Any]], task: str | None = None, metric: str = "accuracy",
                       against: Key | None = None) -> tuple[Key, list[tuple[Key, dict[str, float]]]] | None:
    """Every method against one (``against``: (method, space); default the best mean) on the seeds
    both have (``metrics.paired_difference``), best first: ``(reference, [(method, difference)])``.
    ``None`` with fewer than two methods with several seeds. One computation for the table and the figure."""
    rows = [r for r in rows if r["metric"] == metric and "perturbation" not in r and (task is None or r["task"] == task)
            and len(r.get("values", [])) > 1]
    if len({(r["method"], r["space"]) for r in rows}) < 2:
        return None
    by = {(r["method"], r["space"]): r for r in rows}
    ref = against if against in by else max(by, key=lambda k: by[k]["mean"])
    b = by_seed(by[ref])
    out = []
    for key, r in sorted(by.items(), key=lambda kv: -kv[1]["mean"]):
        if key != ref:
            a = by_seed(r)
            common = sorted(set(a) & set(b))
            out.append((key, paired_difference([a[s] for s in common], [b[s] for s in common])))
    return ref, out
