"""k-NN precision / recall and d_FPT against brute-force references."""

from __future__ import annotations

import numpy as np
import pytest

from manifpt.theory import d_fpt, knn_radii_sq, precision_recall


def reference(real: np.ndarray, gen: np.ndarray, k: int) -> tuple[float, float]:
    def radii(x):
        d = ((x[:, None] - x[None]) ** 2).sum(-1)
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself
    rr, rg = radii(real), radii(gen)
    dgr = ((gen[:, None] - real[None]) ** 2).sum(-1)
    precision = (dgr <= rr[None]).any(1).mean()
    recall = (rg[None] >= dgr.T).any(1).mean()
    return precision, recall


def test_precision_recall_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    real = rng.standard_normal((300, 5))
    gen = rng.standard_normal((200, 5)) * 0.5 + 1.0  # narrower and shifted: precise-ish, low recall
    p, r = precision_recall(real, gen, k=3)
    rp, rr = reference(real.astype(np.float32).astype(np.float64), gen.astype(np.float32).astype(np.float64), 3)
    assert p == pytest.approx(rp) and r == pytest.approx(rr)
    assert p > r
    same_p, same_r = precision_recall(real, real[::-1].copy(), k=3)
    assert same_p == 1.0 and same_r == 1.0


def test_radii_exclude_self() -> None:
    x = np.array([[0.0], [1.0], [3.0], [6.0]], np.float32)
    np.testing.assert_allclose(knn_radii_sq(x, 1), [1.0, 1.0, 4.0, 9.0])
    np.testing.assert_allclose(knn_radii_sq(x, 2), [9.0, 4.0, 9.0, 25.0])


def test_d_fpt() -> None:
    out = d_fpt(np.arange(101.0))
    assert out["d_fpt_max"] == 100 and out["d_fpt_p95"] == pytest.approx(95) and out["artifact_norm_mean"] == 50
