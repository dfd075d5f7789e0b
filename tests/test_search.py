"""Exact k-NN: equal to a float64 brute-force reference, including near ties and the fallback path."""

from __future__ import annotations

import numpy as np
import pytest

from manifpt import get_space
from manifpt.search import ExactKNN, error_bound_coeff, pruned_budget


def brute_force(q: np.ndarray, base: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Independent reference: float64 pairwise distances, stable sort (ties → lowest index)."""
    b64 = base.astype(np.float64)
    d = np.stack([((b64 - x) ** 2).sum(1) for x in q.astype(np.float64)])
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, idx, 1), idx


@pytest.mark.parametrize("backend", ["faiss", "torch", "pruned"])
@pytest.mark.parametrize(("dim", "k"), [(784, 1), (3072, 1), (64, 5)])
def test_random_data_matches_float64_reference(backend: str, dim: int, k: int) -> None:
    rng = np.random.default_rng(dim + k)
    base = rng.random((1500, dim), dtype=np.float32)
    q = rng.random((120, dim), dtype=np.float32)
    knn = ExactKNN(backend, device="cpu").fit(base)
    d, i = knn.search(q, k)
    ref_d, ref_i = brute_force(q, base, k)
    np.testing.assert_array_equal(i, ref_i)
    np.testing.assert_allclose(d, ref_d, rtol=1e-6)


def test_real_photo_embeddings_match_reference(patches: np.ndarray) -> None:
    """Real data (photo patches) in RGB and FREQ: same nearest neighbour as float64 brute force."""
    real, gen = patches[:1000], patches[1000:1200]
    for name in ("rgb", "freq"):
        sp = get_space(name)
        base, q = sp.embed(real), sp.embed(gen)
        ref_d, ref_i = brute_force(q, base, 1)
        for engine in ("faiss", "pruned"):
            d, i = ExactKNN(engine).fit(base).search(q, 1)
            np.testing.assert_array_equal(i, ref_i, err_msg=f"{name} {engine}")
        np.testing.assert_allclose(d, ref_d.astype(np.float32), rtol=1e-6)


def test_near_ties_below_float32_resolution_are_resolved_exactly() -> None:
    """Base points whose distances to the query differ by less than float32 GEMM error."""
    rng = np.random.default_rng(1)
    dim = 512
    q = (rng.random((1, dim)) * 100).astype(np.float32)
    base = np.repeat(q, 40, axis=0) + 10.0  # all at the same large offset ...
    for j in range(40):  # ... then nudge single coordinates by one float32 ulp each
        base[j, j] = np.nextafter(base[j, j], np.float32(np.inf) if j % 2 else np.float32(-np.inf))
    base = np.concatenate([rng.random((500, dim), dtype=np.float32) * 100, base]).astype(np.float32)
    _, ref_i = brute_force(q, base, 3)
    full = ExactKNN("faiss", candidates=4).fit(base)  # 40 near-ties > 4 candidates: full-row fallback
    np.testing.assert_array_equal(full.search(q, 3)[1], ref_i)
    assert full.stats.fallbacks == 1 and full.stats.refined_pairs >= 40
    wide = ExactKNN("faiss", candidates=64).fit(base)  # enough candidates: certified directly
    np.testing.assert_array_equal(wide.search(q, 3)[1], ref_i)
    assert wide.stats.fallbacks == 0


def test_duplicates_tie_to_lowest_index() -> None:
    rng = np.random.default_rng(2)
    base = rng.random((200, 32), dtype=np.float32)
    base[150] = base[40]
    base[199] = base[40]
    d, i = ExactKNN("faiss").fit(base).search(base[[199, 40, 150]], 1)
    assert i[:, 0].tolist() == [40, 40, 40]
    assert d[:, 0].tolist() == [0.0, 0.0, 0.0]


def test_torch_and_faiss_agree_and_memmap_base(tmp_path) -> None:
    rng = np.random.default_rng(3)
    arr = rng.standard_normal((2000, 96)).astype(np.float32)
    mm = np.memmap(tmp_path / "b.f32", np.float32, "w+", shape=arr.shape)
    mm[:] = arr
    q = rng.standard_normal((100, 96)).astype(np.float32)
    a = ExactKNN("faiss").fit(mm).search(q, 4)
    b = ExactKNN("torch", device="cpu", base_chunk=300).fit(arr).search(q, 4)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])


def test_error_bound_coefficient_is_rigorous_gamma() -> None:
    u = 2.0**-24
    assert error_bound_coeff(1000) > 1003 * u
    assert error_bound_coeff(1000) < 1.1 * 1011 * u


def test_bad_arguments() -> None:
    with pytest.raises(TypeError):
        ExactKNN().fit(np.zeros((3, 4), np.float64))
    knn = ExactKNN("faiss").fit(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="queries must be"):
        knn.search(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="unknown search backend"):
        ExactKNN("annoy").fit(np.zeros((3, 4), np.float32))


# --------------------------------------------------------------------------- the pruned engine


def test_pruned_near_ties_and_duplicates_are_exact() -> None:
    """Near-ties one float32 ulp apart (far below the sketch bound's slack) and exact duplicates."""
    rng = np.random.default_rng(1)
    dim = 512
    q = (rng.random((1, dim)) * 100).astype(np.float32)
    ties = np.repeat(q, 40, axis=0) + 10.0
    for j in range(40):
        ties[j, j] = np.nextafter(ties[j, j], np.float32(np.inf) if j % 2 else np.float32(-np.inf))
    base = np.concatenate([rng.random((500, dim), dtype=np.float32) * 100, ties, ties[:3]]).astype(np.float32)
    for k in (1, 3, 5):
        knn = ExactKNN("pruned", sketch_dim=16).fit(base)
        d, i = knn.search(q, k)
        ref_d, ref_i = brute_force(q, base, k)
        np.testing.assert_array_equal(i, ref_i)
        np.testing.assert_allclose(d, ref_d, rtol=1e-6)
    d, i = ExactKNN("pruned", sketch_dim=8).fit(base).search(base[[540, 500, 541]], 1)
    assert i[:, 0].tolist() == [500, 500, 501] and d[:, 0].tolist() == [0.0, 0.0, 0.0]


def test_pruned_far_queries_and_sketch_at_least_the_rank() -> None:
    rng = np.random.default_rng(4)
    low = (rng.standard_normal((800, 6)) @ rng.standard_normal((6, 256))).astype(np.float32)  # rank 6
    far = (rng.standard_normal((50, 256)) * 1e3).astype(np.float32)  # far off the base
    near = low[:50] + rng.standard_normal((50, 256)).astype(np.float32) * 1e-3
    for m in (4, 6, 64, 256):  # below, at and above the rank (the sketch keeps the non-null directions)
        knn = ExactKNN("pruned", sketch_dim=m).fit(low)
        for q in (far, near):
            np.testing.assert_array_equal(knn.search(q, 2)[1], brute_force(q, low, 2)[1], err_msg=str(m))
        assert knn.sketch_.m_ <= 6 + 1 and knn.sketch_.delta_ < 1e-12
    knn = ExactKNN("pruned", sketch_dim=6).fit(low)
    knn.search(near, 1)
    assert knn.stats.refined_pairs < 0.1 * len(low) * len(near)  # rank-6 data: the bound is nearly tight


def test_pruned_lower_bound_never_exceeds_the_distance(patches: np.ndarray) -> None:
    base = (patches[:600].reshape(600, -1) / 255).astype(np.float32)
    q = (patches[600:700].reshape(100, -1) / 255).astype(np.float32)
    from manifpt.pruned import SketchIndex

    lb = SketchIndex(m=32).fit(base).lower_bounds(q)
    d = brute_force_all(q, base)
    assert (lb <= d).all()
    assert np.median(lb / np.maximum(d, 1e-12)) > 0.5  # and it is not vacuous on natural images


def brute_force_all(q: np.ndarray, base: np.ndarray) -> np.ndarray:
    b64 = base.astype(np.float64)
    return np.stack([((b64 - x) ** 2).sum(1) for x in q.astype(np.float64)])


def test_auto_falls_back_to_brute_force_where_pruning_cannot_pay(tmp_path, monkeypatch) -> None:
    """Uniform noise: no direction dominates, the bound prunes nothing, auto switches to FAISS."""
    import manifpt.search as search

    assert ExactKNN("auto", device="cpu").fit(np.zeros((5000, 600), np.float32)).backend_ == "faiss"
    monkeypatch.setattr(search, "PRUNED_MIN_DIM", 512)  # sized down: the suite's data is small
    monkeypatch.setattr(search, "PRUNED_MIN_BASE", 4096)
    monkeypatch.setattr(search, "PRUNED_MAX_DIM", 4096)
    rng = np.random.default_rng(5)
    base = rng.random((5000, 600), dtype=np.float32)
    mm = np.memmap(tmp_path / "b.f32", np.float32, "w+", shape=base.shape)
    mm[:] = base
    q = rng.random((200, 600), dtype=np.float32)
    knn = ExactKNN("auto", device="cpu").fit(mm)
    assert knn.backend_ == "pruned"
    np.testing.assert_array_equal(knn.search(q, 1)[1], brute_force(q, base, 1)[1])
    assert knn.backend_ == "faiss" and knn.stats.engine_switches == 1
    budget = pruned_budget(len(base), 600, knn.sketch_.m_)
    assert knn.sketch_.stats.refined_pairs <= budget * 64  # the probe stopped early


def test_two_level_cascade_is_exact(patches: np.ndarray) -> None:
    """SketchIndex with m₁ < m: the GEMM bound over 16 directions, the pair bound over 64."""
    from manifpt.pruned import SketchIndex
    from manifpt.search import exact_sqdist

    base = (patches[:900].reshape(900, -1) / 255).astype(np.float32)
    q = (patches[900:1000].reshape(100, -1) / 255).astype(np.float32)
    idx = SketchIndex(m=64, m1=16).fit(base)
    for k in (1, 4):
        d, i = idx.search(q, k, lambda x, qi, bi: exact_sqdist(x[qi], base[bi]))
        ref_d, ref_i = brute_force(q, base, k)
        np.testing.assert_array_equal(i, ref_i)
        np.testing.assert_allclose(d, ref_d, rtol=1e-12)
    assert idx.stats.refined_pairs < 0.2 * len(base) * len(q) * 2


@pytest.mark.parametrize(("m", "m1"), [(32, 32), (64, 16)])
def test_pruned_bounds_in_torch_give_the_same_answer(patches: np.ndarray, m: int, m1: int) -> None:
    """The GPU path (bounds, seed and survivor selection in torch) run on the CPU: exact, bounds valid."""
    from manifpt.pruned import SketchIndex
    from manifpt.search import exact_sqdist

    base = (patches[:900].reshape(900, -1) / 255).astype(np.float32)
    q = (patches[900:1000].reshape(100, -1) / 255).astype(np.float32)
    ref_d, ref_i = brute_force(q, base, 3)
    idx = SketchIndex(m=m, m1=m1, device="cpu").fit(base)
    d, i = idx.search(q, 3, lambda x, qi, bi: exact_sqdist(x[qi], base[bi]))
    np.testing.assert_array_equal(i, ref_i)
    np.testing.assert_allclose(d, ref_d, rtol=1e-12)
    assert (idx.lower_bounds(q) <= brute_force_all(q, base)).all()
    assert idx.stats.refined_pairs < 0.5 * len(base) * len(q)


@pytest.mark.parametrize("dim", [7, 3072, 2**18 + 5])
def test_direct_sqdist32_blocks_cover_every_pair_in_any_order(dim: int) -> None:
    """The refinement packs pairs into blocks (long runs of one query alone, short runs together):
    every pair must get its own distance whether the pairs come sorted by query, in runs, or shuffled."""
    from manifpt.pruned import direct_sqdist32

    rng = np.random.default_rng(dim)
    base = rng.random((50, dim), dtype=np.float32)
    x = rng.random((9, dim), dtype=np.float32)
    orders = [np.repeat(np.arange(9), rng.integers(0, 70, 9)), rng.integers(0, 9, 120), np.zeros(0, np.int64),
              np.sort(rng.integers(0, 9, 3))]
    for qi in orders:
        idx = rng.integers(0, 50, len(qi))
        want = ((base[idx].astype(np.float64) - x[qi]) ** 2).sum(1)
        got = direct_sqdist32(base, x, qi, idx)
        assert got.shape == want.shape and np.allclose(got, want, rtol=1e-5)


# ---------------------------------------------------------------------------------------------- pixel lattice


def test_lattice_codes_round_trip_and_refuse_other_values() -> None:
    from manifpt.pruned import lattice_codes

    k = np.arange(256, dtype=np.uint8)[None].repeat(3, 0)
    x = get_space("rgb").embed(k.reshape(3, 16, 16))  # what RGB space computes: fl32(k) / fl32(255)
    np.testing.assert_array_equal(lattice_codes(x), k.reshape(3, -1))
    assert lattice_codes(x + np.float32(1e-7)) is None and lattice_codes(x * 2) is None
    assert lattice_codes(-x[:, 1:]) is None and lattice_codes(np.full((1, 4), np.nan, np.float32)) is None


@pytest.mark.parametrize("dim", [48, 20000])  # 20000 > 16384: the kernel's int32 partial sums roll over to int64
def test_ssd_uint8_matches_numpy(dim: int) -> None:
    from manifpt.pruned import ssd_uint8

    rng = np.random.default_rng(dim)
    codes = rng.integers(0, 256, (50, dim), dtype=np.uint8)
    codes[0], xq = 255, rng.integers(0, 256, (7, dim), dtype=np.uint8)
    xq[0] = 0  # the largest distance: 255² per coordinate
    qi, idx = rng.integers(0, 7, 300), rng.integers(0, 50, 300)
    qi[0], idx[0] = 0, 0
    ref = ((codes[idx].astype(np.int64) - xq[qi].astype(np.int64)) ** 2).sum(1)
    np.testing.assert_array_equal(ssd_uint8(codes, xq, qi, idx), ref)
    assert ssd_uint8(codes, xq, qi[:0], idx[:0]).shape == (0,)


def test_lattice_error_bounds_the_float32_distance() -> None:
    """√d of the float32 vectors lies within E of the lattice distance's √d̃, at every scale, including
    the largest (0 vs 255 everywhere) and 1-grey-level differences where E is relatively largest."""
    from manifpt.pruned import LATTICE, U32, LatticeError

    rng = np.random.default_rng(0)
    dim = 3072
    a = rng.integers(0, 256, (400, dim), dtype=np.int64)
    b = a.copy()
    b[:100] = rng.integers(0, 256, (100, dim))
    b[100:200] = np.clip(a[100:200] + rng.integers(-1, 2, (100, dim)), 0, 255)
    b[200:300, :1] = np.clip(a[200:300, :1] + 1, 0, 255)
    a[300], b[300] = 0, 255
    err = LatticeError(2 * U32 * np.sqrt(dim))
    d_lat = ((a - b) ** 2).sum(1) / float(LATTICE**2)
    fa, fb = (v.astype(np.float32) / np.float32(255) for v in (a, b))
    d_true = ((fa.astype(np.float64) - fb.astype(np.float64)) ** 2).sum(1)
    assert (err.lo(d_lat) <= d_true).all() and (d_true <= err.hi(d_lat)).all()


def test_pruned_search_on_a_pixel_lattice_is_exact_at_ties_and_near_ties(patches: np.ndarray) -> None:
    """RGB embeddings of photo patches: the uint8 lattice refinement, with exact duplicates and
    one-grey-level neighbours (integer ties are frequent), equals float64 brute force, ties by index."""
    real = patches[:1200].copy()
    real[600:610] = real[:10]  # duplicates: the lower index must win
    near = real[:40].copy()
    near[:, 0, 0, 0] = np.clip(near[:, 0, 0, 0].astype(int) + 1, 0, 255)
    queries = np.concatenate([near, patches[1200:1300]])
    sp = get_space("rgb")
    base, q = sp.embed(real), sp.embed(queries)
    knn = ExactKNN("pruned", device="cpu").fit(base)
    assert knn.sketch_.codes_ is not None  # the lattice path is taken
    for k in (1, 3):
        d, i = knn.search(q, k)
        ref_d, ref_i = brute_force(q, base, k)
        np.testing.assert_array_equal(i, ref_i)
        np.testing.assert_allclose(d, ref_d, rtol=1e-6)
    off = ExactKNN("pruned", device="cpu", memory_budget=base.nbytes // 8).fit(base)  # codes do not fit
    assert off.sketch_.codes_ is None
    np.testing.assert_array_equal(off.search(q, 1)[1], brute_force(q, base, 1)[1])
