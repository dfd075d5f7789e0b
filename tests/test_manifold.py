"""Manifold: projection, artifacts, exact zeros for real images, on-disk embedding cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

from manifpt import Manifold, get_space
from manifpt.manifold import EmbeddingCache


def _spaces():
    return [get_space("rgb"), get_space("freq"), get_space("sl", resolution=64),
            get_space("ssl", train={"steps": 2, "batch_size": 16, "width": 8, "proj_dim": 32})]


@pytest.mark.parametrize("space", _spaces(), ids=lambda s: s.name)
def test_artifacts_definition_and_exact_zero_for_real_images(space, patches: np.ndarray) -> None:
    real, gen = patches[:400], patches[1000:1040]
    m = Manifold(space).fit(real)
    queries = np.concatenate([gen, real[[5, 17, 399]]])
    idx, d2 = m.project(queries)
    art = m.artifacts(queries)
    assert idx.dtype == np.int64 and d2.dtype == np.float32 and art.dtype == np.float32
    # real images in the real set: their own index, distance 0, artifact exactly 0 (every space)
    assert idx[-3:].tolist() == [5, 17, 399]
    assert d2[-3:].tolist() == [0.0, 0.0, 0.0]
    assert not art[-3:].any()
    # a = embed(x_G) − embed(x*) with x* the float64 brute-force nearest real embedding
    e_real, e_gen = m.embeddings_, m.embed(gen)
    ref = np.array([np.argmin(((e_real.astype(np.float64) - e) ** 2).sum(1)) for e in e_gen.astype(np.float64)])
    np.testing.assert_array_equal(idx[:40], ref)
    np.testing.assert_array_equal(art[:40], e_gen - e_real[ref])
    assert (np.linalg.norm(art[:40], axis=1) > 0).all()


def test_pixel_identity_not_zero_distance_flags_real_images(patches: np.ndarray) -> None:
    """EfficientNet-Lite0 at 32 px maps many patches to the all-zero vector: distance 0, yet not the same image."""
    real = patches[:300]
    m = Manifold(get_space("sl", resolution=32)).fit(real)
    queries = np.concatenate([patches[1000:1100], real[[3]]])
    _, proj, _ = m.transform(queries)
    assert proj.identical.tolist() == [False] * 100 + [True]
    assert (proj.sqdist[:100] == 0).any()  # the collapse this flag exists for


def test_project_k_returns_sorted_neighbours(patches: np.ndarray) -> None:
    m = Manifold(get_space("rgb")).fit(patches[:300])
    idx, d2 = m.project(patches[1000:1010], k=4)
    assert idx.shape == d2.shape == (10, 4)
    assert (np.diff(d2, axis=1) >= 0).all()


def test_embedding_cache_is_reused(patches: np.ndarray, tmp_path) -> None:
    calls = []
    space = get_space("rgb")
    orig = space.embed_batch
    space.embed_batch = lambda x: calls.append(len(x)) or orig(x)
    m1 = Manifold(space, cache=tmp_path).fit(patches[:200])
    n_first = sum(calls)
    m2 = Manifold(space, cache=tmp_path).fit(patches[:200])
    assert n_first == 200 and sum(calls) == 200  # second fit embedded nothing
    assert isinstance(m2.embeddings_, np.memmap)
    np.testing.assert_array_equal(m1.embeddings_, m2.embeddings_)
    Manifold(space, cache=tmp_path).fit(patches[:201])  # another real set → another key
    assert sum(calls) == 401


def test_interrupted_cache_build_resumes_and_is_never_read_as_complete(patches: np.ndarray, tmp_path) -> None:
    space = get_space("freq")
    orig = space.embed_batch
    state = {"n": 0}

    def flaky(x):
        state["n"] += 1
        if state["n"] == 3:
            raise KeyboardInterrupt("killed")
        return orig(x)

    space.embed_batch = flaky
    with pytest.raises(KeyboardInterrupt):
        Manifold(space, cache=tmp_path, batch_size=50).fit(patches[:230])
    partial = [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    assert len(partial) == 1 and not (partial[0] / "meta.json").exists()
    assert json.loads((partial[0] / "progress.json").read_text())["done"] == 100
    space.embed_batch = orig
    calls = []
    space.embed_batch = lambda x: calls.append(len(x)) or orig(x)
    resumed = Manifold(space, cache=tmp_path, batch_size=50).fit(patches[:230])
    assert sum(calls) == 130  # only the missing images were embedded
    clean = Manifold(get_space("freq"), cache=False).fit(patches[:230])
    np.testing.assert_array_equal(np.asarray(resumed.embeddings_), clean.embeddings_)
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())


def test_cache_shape_mismatch_is_an_error(tmp_path, patches: np.ndarray) -> None:
    m = Manifold(get_space("rgb"), cache=tmp_path).fit(patches[:10])
    with pytest.raises(ValueError, match="cache holds"):
        EmbeddingCache(tmp_path, m.key_, 11, 3072).open()


def test_shape_mismatch_between_sets(patches: np.ndarray) -> None:
    m = Manifold(get_space("rgb"), cache=False).fit(patches[:10])
    with pytest.raises(ValueError, match="real set"):
        m.project(patches[:2, :16, :16])
