"""Metrics against independent reference values."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from sklearn.cluster import KMeans

from manifpt.metrics import (
    classification_metrics,
    fd_ratio,
    frechet_distance,
    frechet_distance_features,
    kmeans_nmi,
    mean_std,
)


def fd_scipy(mu1, s1, mu2, s2) -> float:
    """Reference: the textbook formula with scipy's matrix square root (as pytorch-fid)."""
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_fd_closed_form_diagonal_gaussians() -> None:
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([3.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    expected = 9 + 0 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2 + (3 - 0.5) ** 2  # ‖Δμ‖² + Σ(√a − √b)²
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_fd_general_covariances_match_scipy() -> None:
    rng = np.random.default_rng(0)
    for d in (2, 7, 40):
        a, b = rng.standard_normal((d, d)), rng.standard_normal((d, d))
        s1, s2 = a @ a.T + 0.1 * np.eye(d), b @ b.T
        mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(fd_scipy(mu1, s1, mu2, s2), rel=1e-8)


@pytest.mark.parametrize(("n1", "n2", "d"), [(30, 45, 200), (300, 250, 12)])
def test_fd_from_features_equals_covariance_form(n1: int, n2: int, d: int) -> None:
    """Sample-space (n < d) and feature-space (n > d) paths both equal the covariance formula."""
    rng = np.random.default_rng(n1)
    x1 = rng.standard_normal((n1, d)) @ rng.standard_normal((d, d)) * 0.3
    x2 = rng.standard_normal((n2, d)) + 0.5
    ref = fd_scipy(x1.mean(0), np.cov(x1, rowvar=False), x2.mean(0), np.cov(x2, rowvar=False))
    assert frechet_distance_features(x1, x2) == pytest.approx(ref, rel=1e-6)


def test_fd_of_large_gaussian_samples_approaches_closed_form() -> None:
    rng = np.random.default_rng(1)
    x1 = rng.normal(0, 1, (200_000, 2))
    x2 = rng.normal([3, 0], [2, 1], (200_000, 2))
    assert frechet_distance_features(x1, x2) == pytest.approx(9 + 1, rel=0.02)


def test_fd_ratio_matches_reference_loop() -> None:
    rng = np.random.default_rng(2)
    feats = np.concatenate([rng.normal(m, 1, (40, 5)) for m in (0, 2, 5)])
    labels = np.repeat(["a", "b", "c"], 40)
    out = fd_ratio(feats, labels, seed=3)
    perm = np.random.default_rng(3)
    intra = []
    for c in ("a", "b", "c"):
        g = feats[labels == c][perm.permutation(40)]
        intra.append(fd_scipy(g[:20].mean(0), np.cov(g[:20], rowvar=False), g[20:].mean(0),
                              np.cov(g[20:], rowvar=False)))
    inter = []
    for a, b in (("a", "b"), ("a", "c"), ("b", "c")):
        ga, gb = feats[labels == a], feats[labels == b]
        inter.append(fd_scipy(ga.mean(0), np.cov(ga, rowvar=False), gb.mean(0), np.cov(gb, rowvar=False)))
    assert out["intra"] == pytest.approx(np.mean(intra), rel=1e-6)
    assert out["inter"] == pytest.approx(np.mean(inter), rel=1e-6)
    assert out["ratio"] == pytest.approx(np.mean(inter) / np.mean(intra), rel=1e-6)
    assert out["ratio"] > 5


def nmi_reference(a: np.ndarray, b: np.ndarray) -> float:
    """NMI with arithmetic-mean normalisation from the contingency table."""
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    n = len(a)
    c = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(c, (ai, bi), 1)
    pij, pi, pj = c / n, c.sum(1) / n, c.sum(0) / n
    nz = pij > 0
    mi = (pij[nz] * np.log(pij[nz] / np.outer(pi, pj)[nz])).sum()
    h = lambda p: -(p[p > 0] * np.log(p[p > 0])).sum()  # noqa: E731
    return mi / ((h(pi) + h(pj)) / 2)


def test_kmeans_nmi_matches_independent_formula() -> None:
    rng = np.random.default_rng(4)
    labels = np.repeat(["up", "down", "flat"], 50)
    feats = rng.standard_normal((150, 8)) + np.repeat(np.eye(8)[:3] * 1.5, 50, axis=0)
    clusters = KMeans(3, n_init=10, random_state=0).fit_predict(feats)
    assert kmeans_nmi(feats, labels, seed=0) == pytest.approx(nmi_reference(labels, clusters), rel=1e-9)
    separated = np.repeat(np.eye(3) * 50, 50, axis=0) + rng.standard_normal((150, 3))
    assert kmeans_nmi(separated, labels) == pytest.approx(1.0)


def test_classification_metrics_and_mean_std() -> None:
    m = classification_metrics(["a", "a", "b", "b", "c"], ["a", "b", "b", "b", "a"], ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["recall"] == {"a": 0.5, "b": 1.0, "c": 0.0}
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    f1 = np.mean([2 * 0.5 * 0.5 / 1.0, 2 * (2 / 3) * 1 / (2 / 3 + 1), 0.0])
    assert m["macro_f1"] == pytest.approx(f1)
    assert mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert mean_std([0.7]) == (0.7, 0.0)


def test_paired_difference_against_hand_computed_values() -> None:
    import pytest

    from manifpt.metrics import paired_difference

    a = [0.80, 0.75, 0.82, 0.78, 0.79]
    b = [0.70, 0.72, 0.74, 0.69, 0.75]
    r = paired_difference(a, b)
    # differences 0.10, 0.03, 0.08, 0.09, 0.04: mean 0.068, squared deviations sum to 0.00388, sd √(0.00388 / 4)
    sd = np.sqrt(0.00388 / 4)
    t = 0.068 / (sd / np.sqrt(5))
    assert r["mean"] == pytest.approx(0.068) and t == pytest.approx(4.8823, rel=1e-4)
    # t(4) two-sided 95 % critical value 2.776445 (tables); p = 2 · (1 − F₄(t)), with Student's CDF for
    # 4 degrees of freedom in closed form: F₄(t) = ½ + ¾ x (1 − x² / 3), x = t / √(t² + 4)
    assert r["ci_high"] - r["mean"] == pytest.approx(2.776445 * sd / np.sqrt(5), rel=1e-5)
    x = t / np.sqrt(t * t + 4)
    cdf = 0.5 + 0.75 * x * (1 - x * x / 3)
    assert r["t_p"] == pytest.approx(2 * (1 - cdf), rel=1e-6)
    # sign test: 5 of 5 positive → 2 · 0.5⁵
    assert r["sign_p"] == pytest.approx(2 / 32)
    # ties are dropped by the sign test; a constant difference has a zero-width interval
    r = paired_difference([1, 2, 3], [1, 1, 2])
    assert r["sign_p"] == pytest.approx(0.5) and r["n"] == 3
    r = paired_difference([2, 3, 4], [1, 2, 3])
    assert r["ci_low"] == r["ci_high"] == 1 and r["t_p"] == 0.0
    assert paired_difference([0.5], [0.4])["t_p"] == 1.0
    with pytest.raises(ValueError, match="same length"):
        paired_difference([1, 2], [1, 2, 3])


def test_paired_table_aligns_seeds_and_compares_with_the_best() -> None:
    from manifpt.evaluate import seed_row
    from manifpt.report import paired_table

    rows = [seed_row("t", "model", "a", "image", "accuracy", [0.9, 0.8, 0.85], [0, 1, 2]),
            seed_row("t", "model", "b", "image", "accuracy", [0.6, 0.7, 0.65], [2, 0, 1]),  # other seed order
            seed_row("t", "model", "a", "image", "accuracy", [0.1, 0.1, 0.1], [0, 1, 2], perturbation="jpeg:50")]
    header, body = paired_table(rows)
    assert header[0] == "method − a"
    # b by seed: 0 → 0.7, 1 → 0.65, 2 → 0.6; a − b per seed = 0.2, 0.15, 0.25 → b − a = −0.2 on average
    assert body == [["b", "-20.0", body[0][2], body[0][3], "0.25", "3"]]
    assert paired_table(rows[:1]) is None


@pytest.mark.parametrize("n", [2, 3, 7, 30])
@pytest.mark.parametrize("confidence", [0.9, 0.95])
def test_mean_ci_matches_scipy_t_interval(n: int, confidence: float) -> None:
    from scipy import stats

    from manifpt.metrics import mean_ci, paired_difference

    v = np.random.default_rng(n).normal(0.6, 0.05, n)
    mean, low, high = mean_ci(v, confidence)
    ref_low, ref_high = stats.t.interval(confidence, n - 1, loc=v.mean(), scale=stats.sem(v))
    assert mean == pytest.approx(v.mean()) and low < mean < high
    assert (low, high) == pytest.approx((ref_low, ref_high), rel=1e-12)
    # the paired difference's interval is the same computation on the per-seed differences
    d = paired_difference(v, v / 2, confidence)
    assert (d["ci_low"], d["ci_high"]) == pytest.approx(stats.t.interval(confidence, n - 1, loc=(v / 2).mean(),
                                                                          scale=stats.sem(v / 2)), rel=1e-12)


def test_mean_ci_of_one_or_identical_values() -> None:
    from manifpt.metrics import mean_ci

    assert mean_ci([0.7]) == (0.7, -np.inf, np.inf)
    assert mean_ci([0.5, 0.5, 0.5]) == (0.5, 0.5, 0.5)
