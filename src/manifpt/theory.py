"""The paper's App. A in numbers: d_FPT (artifact size) next to k-NN precision and recall.

ManiFPT's theory says d_FPT(Q; P) = 0 ⇔ Precision(Q, P) = 1 (every generated sample on the real
manifold). Here d_FPT is estimated per model as the largest and the 95th-percentile artifact norm,
and precision / recall follow Kynkäänniemi et al. (2019): a generated sample is *precise* if it falls
inside the k-NN ball of some real sample; a real sample is *recalled* if it falls inside the k-NN
ball of some generated sample (radii: distance to the k-th nearest neighbour within the own set).
"""

from __future__ import annotations

import numpy as np

from .search import ExactKNN


def knn_radii_sq(x: np.ndarray, k: int = 3) -> np.ndarray:
    """Squared distance of each point to its k-th nearest *other* point of the same set (exact)."""
    x = np.ascontiguousarray(x, np.float32)
    d, i = ExactKNN("faiss").fit(x).search(x, min(k + 1, len(x)))
    out = np.empty(len(x))
    for r in range(len(x)):  # drop the point itself (robust to duplicates: drop one entry equal to r)
        keep = i[r] != r
        row = d[r][keep] if keep.sum() == len(i[r]) - 1 else d[r][1:]
        out[r] = row[k - 1]
    return out


def _covered(queries: np.ndarray, centres: np.ndarray, radii_sq: np.ndarray, block: int = 2048) -> np.ndarray:
    """For each query: is it inside some ball (centre, radius)? Blocked float64 distances."""
    q = np.asarray(queries, np.float64)
    c = np.asarray(centres, np.float64)
    qn = (q**2).sum(1)
    cn = (c**2).sum(1)
    out = np.zeros(len(q), bool)
    for lo in range(0, len(c), block):
        d = qn[:, None] + cn[None, lo:lo + block] - 2 * q @ c[lo:lo + block].T
        out |= (d <= radii_sq[None, lo:lo + block]).any(1)
    return out


def precision_recall(real: np.ndarray, gen: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of ``gen`` w.r.t. ``real`` features."""
    real = np.asarray(real, np.float32).reshape(len(real), -1)
    gen = np.asarray(gen, np.float32).reshape(len(gen), -1)
    precision = _covered(gen, real, knn_radii_sq(real, k)).mean()
    recall = _covered(real, gen, knn_radii_sq(gen, k)).mean()
    return float(precision), float(recall)


def d_fpt(artifact_norms: np.ndarray) -> dict[str, float]:
    """Estimates of d_FPT = sup ‖a‖ over a model's samples: the maximum and the 95th percentile."""
    a = np.asarray(artifact_norms, np.float64)
    return {"d_fpt_max": float(a.max()), "d_fpt_p95": float(np.percentile(a, 95)),
            "artifact_norm_mean": float(a.mean())}
