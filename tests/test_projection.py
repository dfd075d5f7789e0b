"""Projection estimators of x*: nn1, knn-mean, local-affine, autoencoder, raw."""

from __future__ import annotations

import numpy as np
import pytest

from manifpt import Manifold, get_space
from manifpt.demo import planted_model
from manifpt.projection import affine_projection, get_projector, list_projectors


def test_registry() -> None:
    assert set(list_projectors()) == {"nn1", "knn-mean", "local-affine", "autoencoder", "raw"}
    with pytest.raises(KeyError, match="unknown projection"):
        get_projector("pca")


def test_affine_projection_reproduces_points_in_the_hull_exactly() -> None:
    rng = np.random.default_rng(0)
    ys = rng.standard_normal((5, 6, 40))  # 5 queries, 6 neighbours in 40-d
    w = rng.dirichlet(np.ones(6), size=5) * 1.6 - 0.1  # affine weights (sum 1, some negative)
    w /= w.sum(1, keepdims=True)
    x = np.einsum("nk,nkd->nd", w, ys)
    np.testing.assert_allclose(affine_projection(x, ys, ridge=0.0), x, atol=1e-10)
    # off the hull: the residual is orthogonal to the hull's directions (a true projection)
    x_off = x + rng.standard_normal(x.shape)
    p = affine_projection(x_off, ys, ridge=0.0)
    d = ys[:, 1:] - ys[:, :1]
    np.testing.assert_allclose(np.einsum("nkd,nd->nk", d, x_off - p), 0, atol=1e-9)


@pytest.mark.parametrize("ridge", [0.0, 1e-3, 1.0])
def test_local_affine_is_never_farther_than_nn1(patches: np.ndarray, ridge: float) -> None:
    real, gen = patches[:500], patches[1000:1060]
    nn1 = Manifold(get_space("rgb"), cache=False).fit(real)
    aff = Manifold(get_space("rgb"), cache=False, projection="local-affine",
                   projection_options={"k": 8, "ridge": ridge}).fit(real)
    d_nn1 = (nn1.artifacts(gen).astype(np.float64) ** 2).sum(1)
    d_aff = (aff.artifacts(gen).astype(np.float64) ** 2).sum(1)
    assert (d_aff <= d_nn1 * (1 + 1e-6) + 1e-9).all()
    assert (d_aff < d_nn1).mean() > 0.9  # and strictly closer almost always


def test_knn_mean_and_raw(patches: np.ndarray) -> None:
    real, gen = patches[:300], patches[1000:1010]
    m = Manifold(get_space("freq"), cache=False, projection="knn-mean", projection_options={"k": 4}).fit(real)
    idx, _ = m.project(gen, k=4)
    expected = m.embed(gen) - m.embeddings_[idx].astype(np.float64).mean(1)
    np.testing.assert_allclose(m.artifacts(gen), expected, rtol=1e-5, atol=1e-5)
    raw = Manifold(get_space("freq"), cache=False, projection="raw").fit(real)
    np.testing.assert_array_equal(raw.artifacts(gen), get_space("freq").embed(gen))


def test_autoencoder_reconstructs_real_better_than_generated(patches: np.ndarray) -> None:
    real, held_out = patches[:1000], patches[1000:1100]
    fake = planted_model(patches[1100:1200], "nearest+checker", strength=24)
    m = Manifold(get_space("rgb"), cache=False, projection="autoencoder",
                 projection_options={"steps": 150, "width": 16, "latent": 64}).fit(real)
    err_real = (m.artifacts(held_out).astype(np.float64) ** 2).sum(1)
    err_fake = (m.artifacts(fake).astype(np.float64) ** 2).sum(1)
    assert np.median(err_real) < 0.7 * np.median(err_fake)
    # cached: a second fit loads the same autoencoder
    m2 = Manifold(get_space("rgb"), cache=False, projection="autoencoder",
                  projection_options={"steps": 150, "width": 16, "latent": 64}).fit(real)
    np.testing.assert_array_equal(m2.artifacts(held_out[:5]), m.artifacts(held_out[:5]))
