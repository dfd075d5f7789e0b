"""Manifold: projection, artifacts, exact zeros for real images, on-disk embedding cache."""

from __future__ import annotations

import json
from pathlib import Path

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


def test_out_of_core_manifold_stays_within_its_memory_budget(tmp_path) -> None:
    """A real set whose embeddings (192 MiB) are 4× the memory budget (48 MiB): fit and project in a
    subprocess, exact against float64 brute force, peak RSS within budget + 32 MiB over the baseline
    taken after the libraries are loaded (interpreter, numpy, torch, FAISS)."""
    import subprocess
    import sys

    n, dim, budget = 16384, 32 * 32 * 3, 48 * 2**20
    child = Path(__file__).with_name("out_of_core_child.py")
    subprocess.run([sys.executable, str(child), str(tmp_path / "cache"), str(n), str(budget), str(tmp_path)],
                   check=True, timeout=600)
    res = json.loads((tmp_path / "result.json").read_text())
    assert res["out_of_core"] and res["backend"] == "pruned"
    emb = np.fromfile(Path(res["emb"]) / "emb.f32", np.float32).reshape(n, dim)
    assert emb.nbytes >= 4 * budget
    q = np.load(tmp_path / "queries.npy").astype(np.float64)
    ref = np.empty(len(q), np.int64)
    for j, x in enumerate(q):  # float64 brute force, ties → lowest index
        d = ((emb - x) ** 2).sum(1, dtype=np.float64)
        ref[j] = int(np.flatnonzero(d == d.min())[0])
    np.testing.assert_array_equal(res["index"], ref)
    grew = res["rss_after_mb"] - res["rss_before_mb"]
    print(f"out of core: {emb.nbytes / 2**20:.0f} MiB of embeddings, {budget / 2**20:.0f} MiB budget, peak RSS "
          f"{res['rss_before_mb']:.0f} MiB after imports, grew {grew:.0f} MiB; {res['refined']} refined pairs for "
          f"{len(q)} queries")
    assert grew <= budget / 2**20 + 32, f"peak RSS grew {grew:.0f} MB for a {budget / 2**20:.0f} MB budget"


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")  # a double close
def test_disk_rows_index_like_numpy_and_refuse_a_short_file(tmp_path) -> None:
    from manifpt.cache import DiskRows
    from manifpt.errors import UsageError
    from manifpt.manifold import parse_bytes

    a = np.random.default_rng(0).random((50, 7), dtype=np.float32)
    rows = DiskRows(tmp_path / "a.f32", a.shape, np.float32, "w+")
    rows[0:30] = a[:30]
    rows[30:] = a[30:]
    rows.flush()
    r = DiskRows(tmp_path / "a.f32", a.shape)
    for key in (3, -1, slice(5, 9), slice(40, 99), slice(9, 5), np.array([7, 3, 3, 8, 9, 10, 0]),
                np.array([[1, 2], [2, 49]]), np.array([], np.int64), [4, -2]):
        np.testing.assert_array_equal(r[key], a[key], err_msg=str(key))
    with pytest.raises(IndexError):
        r[np.array([50])]
    with open(tmp_path / "a.f32", "r+b") as fh:
        fh.truncate(50 * 7 * 4 - 4)
    with pytest.raises(ValueError, match="expected 50×7"):
        DiskRows(tmp_path / "a.f32", a.shape)
    assert parse_bytes("1.5 GiB") == 3 * 2**29 and parse_bytes("64MB") == 64 * 2**20 and parse_bytes(4096) == 4096
    for bad in ("lots", "-1GB", "0", 0):
        with pytest.raises(UsageError):
            parse_bytes(bad)
