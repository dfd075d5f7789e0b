"""Open-world attribution: reject images of unseen sources, enrol a new source, discover unlabelled ones.

A closed-set attributor forces every image into a known class. ``OpenSetScorer`` turns a fitted
``Attributor`` into unknown-scores (higher = more likely from a source it has not seen):

- ``msp``: 1 − maximum softmax probability (Hendrycks & Gimpel, ICLR 2017);
- ``energy``: −logsumexp of the logits (Liu et al., NeurIPS 2020);
- ``knn``: distance to the k-th nearest training feature, features L2-normalised (Sun et al., ICML 2022);
- ``mahalanobis``: smallest Mahalanobis distance to a class mean of the penultimate features, one
  shared covariance with Ledoit–Wolf shrinkage (Lee et al., NeurIPS 2018; shrinkage because the
  features have ~10² dimensions and the classes ~10² samples); features of more than ``MAHA_DIM``
  dimensions (a linear attributor's are its input, ResNet50's 2,048) are first reduced to their top
  ``MAHA_DIM`` principal directions of the centred training features: a d × d covariance of a
  3,072-d input costs seconds per fit and 75 MB per saved seed, and with ~10³ training images
  the discarded directions carry no estimable covariance anyway;
- ``manifold`` (ManiFPT's own): how far the artifact's size, log ‖a‖ (its distance to the real
  manifold), is from every known class's distribution of it, in that class's standard deviations
  (smallest over classes). It needs no network: a generator's artifacts have a typical size.

``calibrate`` sets each score's threshold on the known validation images (default: 95 % of them
accepted). Metrics: AUROC, TNR at 95 % TPR, and OSCR (Dhamija et al., NeurIPS 2018: the area under
the correct-classification rate of known images against the false-positive rate of unknown ones,
as the acceptance threshold sweeps; ties between known and unknown confidences give the diagonal
segment, i.e. their expected area in random order).

``OpenSetScorer.enroll`` adds a source from k images without retraining: nearest class mean on
L2-normalised penultimate features (as Marra19's exemplar classifier). ``discover`` clusters images
(k-means, the number of sources chosen by silhouette) and scores the clusters against true sources.

Protocols (``protocol_splits``): ``random`` holds a seeded draw of sources out; ``unseen-<factor>``
(POSE-style, CVPR 2023) holds out every source with one value of a models.yaml factor — an unseen
family (architecture), upsampling, loss, or training set (``unseen-train_data``).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save
from scipy.special import logsumexp
from sklearn.cluster import KMeans
from sklearn.covariance import LedoitWolf
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, roc_auc_score, silhouette_score
from sklearn.neighbors import NearestNeighbors

from .cache import atomic_write_bytes, write_json
from .errors import DataError, UsageError

SCORES = ("msp", "energy", "knn", "mahalanobis", "manifold")
#: the largest feature dimension the Mahalanobis score models directly (see the module docstring)
MAHA_DIM = 256
FORMAT = "manifpt-openset/1"
#: the score ``predict`` rejects with: the best mean AUROC over the four spaces on the quick
#: benchmark (the validation benchmark; docs/openset.md), not chosen on the default one
REJECT_SCORE = "knn"


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def log_norm(artifacts: np.ndarray) -> np.ndarray:
    """log ‖a‖ of each (flattened) artifact, float64."""
    a = np.asarray(artifacts, np.float64).reshape(len(artifacts), -1)
    return np.log(np.maximum(np.linalg.norm(a, axis=1), 1e-12))


@dataclass
class OpenSetScorer:
    """Unknown-scores of a fitted attributor (see the module docstring); ``fit`` on the training artifacts."""

    attributor: Any
    knn_k: int = 10
    tpr: float = 0.95
    thresholds: dict[str, float] = field(default_factory=dict)

    def fit(self, X: np.ndarray, y: np.ndarray) -> OpenSetScorer:
        y = np.asarray(y).astype(str)
        self.classes_ = list(self.attributor.classes_)
        self.enrolled_: list[str] = []
        f = np.asarray(self.attributor.transform(X), np.float64)
        self.train_unit_ = _unit(f)
        self.train_codes_ = np.searchsorted(self.classes_, y).astype(np.int64)
        self._index()
        self.means_ = np.stack([f[y == c].mean(0) for c in self.classes_])
        centred = np.concatenate([f[y == c] - m for c, m in zip(self.classes_, self.means_, strict=True)])
        if centred.shape[1] > MAHA_DIM:
            self.basis_ = np.linalg.svd(centred, full_matrices=False)[2][:MAHA_DIM].T.copy()  # d × MAHA_DIM
        else:
            self.basis_ = np.eye(centred.shape[1])
        self.precision_ = LedoitWolf().fit(centred @ self.basis_).precision_
        ln = log_norm(X)
        self.norm_mu_ = np.array([ln[y == c].mean() for c in self.classes_])
        self.norm_sd_ = np.array([max(ln[y == c].std(), 1e-6) for c in self.classes_])
        return self

    def _index(self) -> None:
        known = self.train_codes_ < len(self.classes_)
        self.knn_ = NearestNeighbors(n_neighbors=min(self.knn_k, int(known.sum()))).fit(self.train_unit_[known])

    def _knn(self, d_known: np.ndarray, f: np.ndarray) -> np.ndarray:
        """The k-th-neighbour distance among the training features, or among an enrolled source's few
        features where that is smaller, with k scaled to the source's size (the same fraction of its
        images as k is of a known class's: 10 enrolled images against ~240 per known class → the
        nearest one), so that enrolment from k images can accept its source."""
        if not self.enrolled_:
            return d_known
        known = self.train_codes_[self.train_codes_ < len(self.classes_)]
        per_class = len(known) / len(self.classes_)
        u, out = _unit(f), d_known.copy()
        for c in range(len(self.classes_), len(self.classes_) + len(self.enrolled_)):
            members = self.train_unit_[self.train_codes_ == c]
            k = max(1, min(len(members), round(self.knn_k * len(members) / per_class)))
            dist = np.sqrt(np.maximum(2 - 2 * u @ members.T, 0))  # unit vectors: ‖a − b‖² = 2 − 2⟨a, b⟩
            out = np.minimum(out, np.partition(dist, k - 1, axis=1)[:, k - 1])
        return out

    def enroll(self, name: str, X_new: np.ndarray) -> None:
        """Add source ``name`` from the artifacts of k of its images, without retraining: its features
        join the kNN set (so the ``knn`` score accepts it) and its unit mean the class means that
        ``predict_open`` classifies by once a source is enrolled (nearest class mean). The other scores
        do not know enrolled sources."""
        if name in self.classes_ or name in self.enrolled_:
            raise ValueError(f"a class named '{name}' exists already")
        u = _unit(np.asarray(self.attributor.transform(X_new), np.float64))
        self.enrolled_ = [*self.enrolled_, name]  # new objects, never in place: ``with_source`` copies shallowly
        code = len(self.classes_) + len(self.enrolled_) - 1
        self.train_unit_ = np.vstack([self.train_unit_, u])
        self.train_codes_ = np.r_[self.train_codes_, np.full(len(u), code, np.int64)]
        self._index()

    def with_source(self, name: str, X_new: np.ndarray) -> OpenSetScorer:
        """A copy of this scorer with ``name`` enrolled (this one unchanged; the attributor is shared)."""
        other = copy.copy(self)
        other.enroll(name, X_new)
        return other

    def _outputs(self, X: np.ndarray, outputs: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
        """(logits, features) of ``X``: ``outputs`` when the caller has them (``Attributor.outputs``)."""
        if outputs is not None:
            return outputs
        if hasattr(self.attributor, "outputs"):
            return self.attributor.outputs(X)
        return self.attributor.decision_function(X), self.attributor.transform(X)

    def classify(self, X: np.ndarray, outputs: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """The attributor's class, or, once a source is enrolled, the nearest class mean (unit-normalised
        features) over the known and enrolled sources."""
        logits, f = self._outputs(X, outputs)
        if not self.enrolled_:
            return np.asarray(self.attributor.classes_)[np.asarray(logits).argmax(1)]
        names = [*self.classes_, *self.enrolled_]
        means = _unit(np.stack([self.train_unit_[self.train_codes_ == c].mean(0) for c in range(len(names))]))
        return nearest_mean(names, means, f)

    def predict_open(self, X: np.ndarray, score: str = "knn", outputs: tuple[np.ndarray, np.ndarray] | None = None,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(``classify``'s class of each artifact, whether it is rejected as unknown, its score ÷ the
        threshold); the class is reported for rejected images too (the nearest known source).
        ``outputs``: the attributor's (logits, features) of ``X``, when already computed."""
        if score not in self.thresholds:
            raise ValueError(f"score '{score}' is not calibrated (call calibrate; scores: {', '.join(SCORES)})")
        outputs = self._outputs(X, outputs)
        s = self.scores(X, outputs)[score]
        thr = self.thresholds[score]
        return self.classify(X, outputs), s > thr, s / thr if thr > 0 else s

    def save(self, directory: str | Path) -> None:
        """``openset.safetensors`` + ``openset.json`` next to the attributor (no pickle)."""
        directory = Path(directory)
        tensors = {"train_unit": self.train_unit_.astype(np.float32), "train_codes": self.train_codes_,
                   "means": self.means_, "precision": self.precision_, "basis": self.basis_,
                   "norm_mu": self.norm_mu_, "norm_sd": self.norm_sd_}
        atomic_write_bytes(directory / "openset.safetensors",
                           save({k: np.ascontiguousarray(v) for k, v in tensors.items()}))
        write_json(directory / "openset.json", {"format": FORMAT, "classes": self.classes_, "enrolled": self.enrolled_,
                                                "thresholds": self.thresholds, "knn_k": self.knn_k, "tpr": self.tpr})

    @classmethod
    def load(cls, directory: str | Path, attributor: Any) -> OpenSetScorer | None:
        """The scorer saved with ``attributor`` (``None`` for runs fitted before rejection existed);
        every tensor's shape and dtype is checked against the attributor's classes and features."""
        directory = Path(directory)
        meta_path, path = directory / "openset.json", directory / "openset.safetensors"
        if not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            t = load_file(str(path))
        except Exception as e:  # malformed JSON or safetensors
            raise DataError(f"{directory}: unreadable open-set calibration ({e})") from None
        if meta.get("format") != FORMAT or meta.get("classes") != list(attributor.classes_):
            raise DataError(f"{meta_path}: not the open-set calibration of this attributor")
        k, n_all = len(meta["classes"]), len(meta["classes"]) + len(meta.get("enrolled", []))
        n = t["train_unit"].shape[0] if "train_unit" in t and t["train_unit"].ndim == 2 else -1
        dim = t["train_unit"].shape[1] if n >= 0 else -1
        if "basis" not in t and n >= 0:  # saved before the reduction existed: the identity
            t["basis"] = np.eye(dim)
        b = t.get("basis")
        m = b.shape[1] if b is not None and b.ndim == 2 and 1 <= b.shape[1] <= min(dim, MAHA_DIM) else -1
        want = {"train_unit": ((n, dim), np.float32), "train_codes": ((n,), np.int64), "means": ((k, dim), np.float64),
                "precision": ((m, m), np.float64), "basis": ((dim, m), np.float64), "norm_mu": ((k,), np.float64),
                "norm_sd": ((k,), np.float64)}
        for name, (shape, dtype) in want.items():
            if name not in t or t[name].shape != shape or t[name].dtype != dtype or n < 1:
                raise DataError(f"{path}: tensor {name} missing or not {np.dtype(dtype).name} {shape}")
        if t["train_codes"].min() < 0 or t["train_codes"].max() >= n_all or not np.isfinite(t["train_unit"]).all():
            raise DataError(f"{path}: class codes out of range or non-finite features")
        self = cls(attributor, knn_k=int(meta["knn_k"]), tpr=float(meta["tpr"]),
                   thresholds={str(a): float(b) for a, b in meta["thresholds"].items()})
        self.classes_, self.enrolled_ = list(meta["classes"]), list(meta.get("enrolled", []))
        self.train_unit_, self.train_codes_ = t["train_unit"].astype(np.float64), t["train_codes"]
        self.means_, self.precision_, self.basis_, self.norm_mu_, self.norm_sd_ = (
            t[x] for x in ("means", "precision", "basis", "norm_mu", "norm_sd"))
        self._index()
        return self

    def scores(self, X: np.ndarray, outputs: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Every unknown-score of each artifact (higher = more likely unseen source)."""
        logits, f = self._outputs(X, outputs)
        logits, f = np.asarray(logits, np.float64), np.asarray(f, np.float64)
        proba = np.exp(logits - logsumexp(logits, axis=1, keepdims=True))
        d, _ = self.knn_.kneighbors(_unit(f))
        diff = (f[:, None, :] - self.means_[None]) @ self.basis_
        maha = np.einsum("nkd,de,nke->nk", diff, self.precision_, diff).min(1)
        z = np.abs(log_norm(X)[:, None] - self.norm_mu_[None]) / self.norm_sd_[None]
        return {"msp": 1 - proba.max(1), "energy": -logsumexp(logits, axis=1), "knn": self._knn(d[:, -1], f),
                "mahalanobis": maha, "manifold": z.min(1)}

    def calibrate(self, X_val: np.ndarray) -> dict[str, float]:
        """Thresholds accepting ``tpr`` of the known validation images, per score."""
        s = self.scores(X_val)
        self.thresholds = {k: float(np.quantile(v, self.tpr)) for k, v in s.items()}
        return self.thresholds

    def predict(self, X: np.ndarray, score: str = "msp") -> np.ndarray:
        """``predict_open``'s class, or ``"unknown"`` where ``score`` exceeds its calibrated threshold."""
        cls, unknown, _ = self.predict_open(X, score)
        pred = np.asarray(cls).astype(object)
        pred[unknown] = "unknown"
        return pred


# --------------------------------------------------------------------------- metrics


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    """Probability that an unknown image scores above a known one (ties count one half)."""
    y = np.r_[np.zeros(len(known)), np.ones(len(unknown))]
    return float(roc_auc_score(y, np.r_[known, unknown]))


def tnr_at_tpr(known: np.ndarray, unknown: np.ndarray, tpr: float = 0.95) -> float:
    """Fraction of unknown images rejected at the threshold that accepts ``tpr`` of the known ones."""
    return float((np.asarray(unknown) > np.quantile(known, tpr)).mean())


def oscr(known_correct: np.ndarray, known_score: np.ndarray, unknown_score: np.ndarray) -> float:
    """Open-set classification rate (Dhamija et al. 2018): area under CCR(θ) against FPR(θ).

    An image is accepted when its unknown-score is ≤ θ. CCR = accepted and correctly classified known
    images / known images; FPR = accepted unknown images / unknown images. θ sweeps every distinct
    score from the lowest, starting at (0, 0); images with equal scores enter together.
    """
    known_correct = np.asarray(known_correct, bool)
    s = np.r_[known_score, unknown_score]
    hit = np.r_[known_correct, np.zeros(len(unknown_score), bool)].astype(np.float64)
    fp = np.r_[np.zeros(len(known_score)), np.ones(len(unknown_score))]
    order = np.argsort(s, kind="stable")
    s, hit, fp = s[order], hit[order], fp[order]
    last = np.r_[s[1:] != s[:-1], True]  # the last image of each group of equal scores
    ccr = np.r_[0.0, np.cumsum(hit)[last] / max(len(known_score), 1)]
    fpr = np.r_[0.0, np.cumsum(fp)[last] / max(len(unknown_score), 1)]
    return float(np.sum((fpr[1:] - fpr[:-1]) * (ccr[1:] + ccr[:-1]) / 2))


# --------------------------------------------------------------------------- enrolment, discovery


def nearest_mean(classes: list[str], means: np.ndarray, features: np.ndarray) -> np.ndarray:
    """The class whose (unit) mean is closest to each unit-normalised feature."""
    return np.asarray(classes)[(_unit(features) @ means.T).argmax(1)]


def discover(features: np.ndarray, seed: int = 0, max_clusters: int = 8) -> tuple[np.ndarray, int]:
    """k-means clusters of unit-normalised features, k ∈ 2..max_clusters chosen by silhouette."""
    u = _unit(features)
    best: tuple[float, np.ndarray, int] | None = None
    for k in range(2, min(max_clusters, len(u) - 1) + 1):
        lab = KMeans(k, n_init=10, random_state=seed).fit_predict(u)
        s = silhouette_score(u, lab) if len(set(lab.tolist())) > 1 else -1.0
        if best is None or s > best[0]:
            best = (s, lab, k)
    if best is None:
        return np.zeros(len(u), np.int64), 1
    return best[1], best[2]


def cluster_scores(truth: np.ndarray, clusters: np.ndarray) -> dict[str, float]:
    """NMI, ARI and purity (each cluster's majority source, over all images) of clusters vs true sources."""
    truth = np.asarray(truth).astype(str)
    purity = sum(np.unique(truth[clusters == c], return_counts=True)[1].max() for c in np.unique(clusters))
    return {"nmi": float(normalized_mutual_info_score(truth, clusters)),
            "ari": float(adjusted_rand_score(truth, clusters)), "purity": float(purity / len(truth))}


# --------------------------------------------------------------------------- the protocol

#: the score whose rejections ``evaluate_openset`` clusters (chosen on the planted-trace tests, where
#: it separated every held-out source; never on a benchmark's test split)
DISCOVERY_SCORE = "mahalanobis"


def protocol_splits(protocol: str, factors: dict[str, dict[str, str]], seeds: list[int],
                    main: list[str] | None = None, n_unknown: int = 3) -> dict[int, tuple[list[str], list[str]]]:
    """seed → (known sources, held-out sources) of a leave-sources-out protocol.

    ``random``: ``n_unknown`` of the ``main`` sources (default: all), a seeded draw per seed; the other
    main sources are known. ``unseen-<factor>``: every source with one value of that models.yaml
    factor is held out, the other sources of the population are known; the value cycles over the
    eligible ones with the seeds (most sources first, then by name). Eligible: not ``n/a``, not the
    most common value (the reference design every variant departs from), and leaving two known
    sources. The population is ``main``, or every source where the factor does not vary among the
    main ones (train-data copies: ``unseen-train_data``)."""
    main = sorted(main or factors)
    if protocol == "random":
        n = min(n_unknown, len(main) - 2)
        if n < 1:
            raise UsageError(f"protocol random needs at least three sources (have {len(main)})")
        out = {}
        for s in seeds:
            unknown = sorted(np.random.default_rng(s).choice(main, n, replace=False).tolist())
            out[s] = ([m for m in main if m not in unknown], unknown)
        return out
    if not protocol.startswith("unseen-"):
        raise UsageError(f"unknown open-set protocol '{protocol}' (random, or unseen-<factor>)")
    factor = protocol.removeprefix("unseen-")
    value = {m: str(f[factor]) for m, f in factors.items() if factor in f}
    pop = [m for m in main if m in value]
    if len({value[m] for m in pop}) < 2:
        pop = sorted(value)
    counts: dict[str, int] = {}
    for m in pop:
        counts[value[m]] = counts.get(value[m], 0) + 1
    ranked = sorted(counts, key=lambda v: (-counts[v], v))
    eligible = [v for v in ranked[1:] if v != "n/a" and len(pop) - counts[v] >= 2]
    if not eligible:
        raise UsageError(f"protocol {protocol}: no value of '{factor}' can be held out "
                         f"(values: {', '.join(f'{v} ×{counts[v]}' for v in ranked) or 'none'})")
    out = {}
    for i, s in enumerate(seeds):
        v = eligible[i % len(eligible)]
        out[s] = ([m for m in pop if value[m] != v], [m for m in pop if value[m] == v])
    return out


def held_out_split(y: np.ndarray, unknown: list[str], seed: int,
                   fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
                   known: list[str] | None = None) -> dict[str, np.ndarray]:
    """``known`` sources (default: every source not ``unknown``) split train/val/test (stratified,
    seeded); every image of an ``unknown`` source in ``"unknown"``; images of neither are left out."""
    from .splits import stratified_split

    y = np.asarray(y).astype(str)
    known = np.flatnonzero(np.isin(y, known) if known is not None else ~np.isin(y, unknown))
    sp = stratified_split(y[known], fractions, seed)
    return {**{k: known[v] for k, v in sp.items()}, "unknown": np.flatnonzero(np.isin(y, unknown))}


#: false-positive rates at which ``roc_tpr`` samples a ROC curve (for figures averaged over seeds)
ROC_GRID = np.linspace(0, 1, 101)


def roc_tpr(known: np.ndarray, unknown: np.ndarray) -> list[float]:
    """Rejection ROC (unknown images rejected vs known images rejected) at ``ROC_GRID``."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(np.r_[np.zeros(len(known)), np.ones(len(unknown))], np.r_[known, unknown])
    return np.interp(ROC_GRID, fpr, tpr).round(4).tolist()


def open_set_metrics(known_correct: np.ndarray, known: dict[str, np.ndarray],
                     unknown: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """score → {auroc, oscr, tnr95, roc} from the known test images' and the unknown images' scores."""
    return {s: {"auroc": auroc(known[s], unknown[s]), "oscr": oscr(known_correct, known[s], unknown[s]),
                "tnr95": tnr_at_tpr(known[s], unknown[s]), "roc": roc_tpr(known[s], unknown[s])} for s in known}


def evaluate_openset(X: np.ndarray, y: np.ndarray, unknown: list[str], seed: int, make: Any,
                     ks: tuple[int, ...] = (1, 5, 10, 50), known: list[str] | None = None) -> dict[str, Any]:
    """One seed of the leave-sources-out protocol on artifacts ``X``: an attributor (``make(seed)``)
    trained on the ``known`` sources (default: all but ``unknown``); every score's AUROC / OSCR /
    TNR95 (known test split vs every image of the unknown sources), closed-set accuracy, the
    enrolment curve (each unknown source enrolled from k of its images with
    ``OpenSetScorer.with_source``, accuracy on the rest of them and on the known test split), and
    discovery (clusters of the images that ``DISCOVERY_SCORE`` rejects, against their true sources)."""
    y = np.asarray(y).astype(str)
    sp = held_out_split(y, unknown, seed, known=known)
    tr, va, te, un = sp["train"], sp["val"], sp["test"], sp["unknown"]
    att = make(seed).fit(X[tr], y[tr], X[va], y[va])
    scorer = OpenSetScorer(att).fit(X[tr], y[tr])
    scorer.calibrate(X[va])
    k_scores, u_scores = scorer.scores(X[te]), scorer.scores(X[un])
    correct = np.asarray(att.predict(X[te])) == y[te]
    out: dict[str, Any] = {"closed_accuracy": float(correct.mean()),
                           "scores": open_set_metrics(correct, k_scores, u_scores)}
    rng = np.random.default_rng(seed)
    curve: dict[int, dict[str, list[float]]] = {k: {"new": [], "known": []} for k in ks}
    for m in unknown:
        order = rng.permutation(un[y[un] == m])
        for k in ks:
            if k >= len(order):
                continue
            s = scorer.with_source(f"new:{m}", X[order[:k]])
            curve[k]["new"].append(float((s.classify(X[order[k:]]) == f"new:{m}").mean()))
            curve[k]["known"].append(float((s.classify(X[te]) == y[te]).mean()))
    out["enrolment"] = {k: {part: float(np.mean(v)) for part, v in c.items()} for k, c in curve.items() if c["new"]}
    rejected = np.r_[k_scores[DISCOVERY_SCORE], u_scores[DISCOVERY_SCORE]] > scorer.thresholds[DISCOVERY_SCORE]
    pool_f = att.transform(np.concatenate([X[te], X[un]])[rejected])
    pool_y = np.r_[y[te], y[un]][rejected]
    if len(pool_y) >= 6:
        clusters, n_found = discover(pool_f, seed=seed, max_clusters=max(2, 2 * len(unknown)))
        out["discovery"] = {**cluster_scores(pool_y, clusters), "clusters": n_found, "rejected": len(pool_y),
                            "sources": len(set(pool_y.tolist()))}
    return out
