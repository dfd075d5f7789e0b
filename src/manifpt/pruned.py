"""Pruned exact k-NN: a PCA sketch bounds every distance from below, so few exact distances are computed.

Brute force computes N·D multiply-adds per query and is already near the CPU's GEMM roofline; only
doing less arithmetic, while staying exact, goes further. With the base centred at μ, an orthonormal
basis P (D×m) of its top m principal directions (from a sample), and for every point the sketch
s = Pᵀ(y − μ) and the residual norm r = ‖(y − μ) − P s‖:

    ‖x − y‖² = ‖s_x − s_y‖² + ‖res_x − res_y‖²  ≥  ‖s_x − s_y‖² + (r_x − r_y)²  =: L(x, y)

(Pythagoras on the orthogonal split, the reverse triangle inequality on the complement). A search
computes L to every base point (one nq×(m+1) by (m+1)×N float32 GEMM: (m+1)/D of brute force's
arithmetic), then refines in increasing order of L, until every remaining L exceeds an upper bound T
on the k-th distance. What is never refined cannot be in the top k, so the answer is exact by
construction.

Refinement is two-tier. Every surviving pair gets Σ(x − y)² in float32 as differences
(``direct_sqdist32``: its error is relative to the distance itself, ≤ γ_{D+2}·d in any order, so it
gives T and excludes almost every pair); only the finalists that this cannot exclude (usually k per
query) get the exact float64 distance (``search.exact_sqdist``, the function float64 brute force
uses) and are ranked by (distance, index). Refinement runs on all cores and reads only the refined
base rows, so the base can stay on disk (``cache.DiskRows``): RAM holds the float32 sketch
(N·(m+1)), the norms and one batch of bounds.

Pixel lattices. When every base value is a float32 k/255 (RGB space: ``pixels / 255``), the base is
also kept as uint8 codes, a quarter of its bytes, and queries on the same lattice are refined by an
exact integer Σ(a − b)² (``ssd_uint8``, compiled with numba): 4× fewer bytes read per pair, which is what
refinement costs. Its distance is that of the ideal lattice points; the float32 values differ from
them by ≤ u₃₂ per coordinate, so √d of the float32 vectors is within E = 2u₃₂√D of √d̃ (``LatticeError``),
a bound far tighter than float32 refinement's and used the same way.

A cascade makes the bound tighter where it matters: the principal directions are nested, so one
sketch of m columns holds every shorter one. L over the first ``m1`` columns is computed for every
base point (the GEMM); a point that it cannot prune gets L over all m columns in float64 (m
multiply-adds, not D). ``ExactKNN`` uses one level (m₁ = m): at N = 50k the per-pair gathers of the
second level cost more than the GEMM over all m columns.

Rounding. "Exact" means equal to float64 brute force, ties by index. The computed P is not exactly
orthonormal (δ = ‖PᵀP − I‖_F is measured, ~1e-15); the sketch is computed in float64 with an
absolute slack c·‖·‖², c = 16·(D + m)·√m·u₆₄ (Higham's γ_n bounds with a safety factor of 4); the
residual norms are intervals. The float32 GEMM's inputs are the rounded sketch, whose error and the
expanded form's are folded into one separable slack K·(‖x_c‖² + ‖y_c‖²) (see ``fit``). A point is
pruned only if its certified bound exceeds T·(1 + 3γ_D) (γ_D = γ_{D+2} in float64), where T is the
k-th smallest float32 distance times (1 + ε), ε bounding ``direct_sqdist32``'s error: its float64
distance then exceeds T(1 + γ_D), which bounds the float64 distances of k finalists, so float64
brute force ranks it below them too (tested at near-ties, duplicates, far-off queries, m ≥ rank of
the base, and through the torch path that runs the bounds on a GPU).
"""

from __future__ import annotations

import itertools
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

U64, U32 = 2.0**-53, 2.0**-24


def gamma(n: int, u: float) -> float:
    """Higham's γ_n = nu / (1 − nu): bounds the relative rounding error of n chained operations."""
    return n * u / (1 - n * u)


#: the pixel lattice of ``lattice_codes``: values k/255, k = 0..255, as float32 division computes them
LATTICE = 255


def lattice_codes(x: np.ndarray) -> np.ndarray | None:
    """uint8 codes k with fl₃₂(k / 255) == x for every value (RGB embeddings), else ``None``."""
    x = np.asarray(x, np.float32)
    k = np.rint(x * np.float32(LATTICE))
    if not (np.all((k >= 0) & (k <= LATTICE)) and np.array_equal(k / np.float32(LATTICE), x)):
        return None
    return k.astype(np.uint8)


def _compile_ssd():
    from numba import njit

    # one thread, re-entrant, no third OpenMP runtime beside torch's and FAISS's: ~2 µs per 12 KB row
    # inside a search (64 px), where the float32 rows cost ~8-10 µs, so refinement stops being the
    # largest stage
    @njit(nogil=True, cache=True)
    def ssd(codes, xq, qi, idx, out):  # pragma: no cover (compiled)
        d = codes.shape[1]
        for p in range(len(qi)):
            a, b = codes[idx[p]], xq[qi[p]]
            s = np.int64(0)  # (a loop blocked into int32 partial sums was not vectorised: 5x slower)
            for j in range(d):
                t = np.int32(a[j]) - np.int32(b[j])
                s += t * t  # ≤ 255², exact in int32, summed in int64
            out[p] = s
    return ssd


_SSD = None


def ssd_uint8(codes: np.ndarray, xq: np.ndarray, qi: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Exact Σ (xq[qi] − codes[idx])² per pair, as int64 (uint8 rows; numba, compiled once and cached)."""
    global _SSD
    if _SSD is None:
        _SSD = _compile_ssd()
    out = np.empty(len(qi), np.int64)
    if len(qi):
        _SSD(codes, xq, np.ascontiguousarray(qi, np.int64), np.ascontiguousarray(idx, np.int64), out)
    return out


@dataclass(frozen=True)
class RelativeError:
    """A refined distance d̃ with d ∈ [d̃(1 − ε), d̃(1 + ε)] (``direct_sqdist32``)."""

    eps: float

    def hi(self, d: np.ndarray) -> np.ndarray:
        return np.asarray(d, np.float64) * (1.0 + self.eps)

    def lo(self, d: np.ndarray) -> np.ndarray:
        return np.asarray(d, np.float64) * (1.0 - self.eps)


@dataclass(frozen=True)
class LatticeError:
    """A lattice distance d̃ = Σ(a − b)²/255² with √d ∈ [√d̃ − E, √d̃ + E] (E = 2u₃₂√D: each float32
    k/255 is within u₃₂·k/255 ≤ u₃₂ of the lattice point), the float64 roundings covered by 8u₆₄."""

    e: float

    def hi(self, d: np.ndarray) -> np.ndarray:
        return (np.sqrt(np.asarray(d, np.float64) * (1 + U64)) + self.e) ** 2 * (1 + 8 * U64)

    def lo(self, d: np.ndarray) -> np.ndarray:
        return np.maximum(np.sqrt(np.asarray(d, np.float64) * (1 - U64)) - self.e, 0.0) ** 2 * (1 - 8 * U64)


class PruningDoesNotPay(RuntimeError):
    """Raised when a search refines more than its budget: brute force is cheaper on this data."""


@dataclass
class PrunedStats:
    queries: int = 0
    refined_pairs: int = 0  # float32 direct distances computed
    exact_pairs: int = 0  # of which recomputed in float64 (the finalists)
    rounds: int = 0
    #: where search time goes (s): the queries' sketches, the bound GEMM + selection, float32 refinement,
    #: float64 finalists; the rest of ``search`` is bookkeeping (sorting survivors, thresholds)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(("sketch", "bounds", "refine", "exact",
                                                                              "total"), 0.0))

    def add(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] += now - since
        return now


def _sqnorms(a: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, a)


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    """Threads for the refinement: numpy's gathers and einsum release the GIL, one core each."""
    return ThreadPoolExecutor(max(1, len(os.sched_getaffinity(0))), thread_name_prefix="manifpt-refine")


def direct_sqdist32(base: np.ndarray, x: np.ndarray, qi: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Σ (x[qi] − base[idx])² per pair in float32, as differences (not the expanded form), so its error
    is relative to the distance itself: |d̃ − d| ≤ γ_{D+2}·d in any summation order. Rows are read in
    blocks of ≤ 1 MB of one query each (the query row is broadcast, not gathered) on all cores: 2×
    float64's speed, a quarter of its memory traffic. The gather of base rows is the floor
    (``benchmarks/refine_floor.py``)."""
    out = np.empty(len(qi), np.float32)
    step = max(1, 2**18 // x.shape[1])
    cuts = np.flatnonzero(np.diff(qi)) + 1
    runs = np.concatenate([[0], cuts, [len(qi)]]).tolist()
    blocks, lo = [], 0  # (start, stop, one query?): long runs alone, short ones packed up to step rows
    for a, b in itertools.pairwise(runs):
        if b - a >= step // 2:
            if lo < a:
                blocks.append((lo, a, False))
            blocks += [(c, min(c + step, b), True) for c in range(a, b, step)]
            lo = b
        elif b - lo > step:
            blocks.append((lo, a, False))
            lo = a
    if lo < len(qi):
        blocks.append((lo, len(qi), False))

    def job(block: tuple[int, int, bool]) -> None:
        lo, hi, one = block
        y = np.asarray(base[idx[lo:hi]], np.float32)
        y -= x[qi[lo]] if one else x[qi[lo:hi]]
        out[lo:hi] = np.einsum("ij,ij->i", y, y)

    if len(blocks) > 1:
        list(_pool().map(job, blocks))
    elif blocks:
        job(blocks[0])
    return out


class SketchIndex:
    """The PCA-sketch lower bound over a fixed float32 base (in memory, a memmap or ``DiskRows``)."""

    def __init__(self, m: int = 512, m1: int = 64, sample: int = 2048, seed: int = 0, chunk: int = 2**22,
                 first: int = 4, lb_budget: int = 2**24, device: str | None = None,
                 codes_budget: int | None = None):
        self.m, self.m1, self.sample, self.seed, self.chunk = m, m1, sample, seed, chunk
        self.first, self.lb_budget, self.device = first, lb_budget, device
        self.codes_budget = codes_budget  # bytes for the uint8 lattice copy (None: any; 0: never)
        self.stats = PrunedStats()

    # -- build -------------------------------------------------------------------------
    def fit(self, base: np.ndarray) -> SketchIndex:
        n, dim = base.shape
        self.base_, self.dim_, self.n_ = base, dim, n
        step = max(1, self.chunk // dim)  # rows per float64 block (``chunk`` elements: 32 MB by default)
        self.mean_ = np.zeros(dim, np.float64)
        use_codes = self.codes_budget is None or n * dim <= self.codes_budget
        self.codes_ = np.empty((n, dim), np.uint8) if use_codes else None
        for lo in range(0, n, step):
            block = np.asarray(base[lo:lo + step])
            self.mean_ += block.sum(0, dtype=np.float64)
            if self.codes_ is not None:
                codes = lattice_codes(block)
                if codes is None:
                    self.codes_ = None  # not a pixel lattice: float32 refinement
                else:
                    self.codes_[lo:lo + len(block)] = codes
        self.mean_ /= n
        self.lattice_error_ = LatticeError(2 * U32 * math.sqrt(dim))
        if self.codes_ is not None:  # compile (or load the cached) kernel now, not in the first search
            ssd_uint8(self.codes_[:1], self.codes_[:1], np.zeros(1, np.int64), np.zeros(1, np.int64))
        rng = np.random.default_rng(self.seed)
        rows = np.sort(rng.choice(n, min(n, self.sample), replace=False))
        s = np.asarray(base[rows], np.float64) - self.mean_
        m = max(1, min(self.m, dim, len(rows)))
        # top-m principal directions from the sample's Gram matrix (n_s × n_s, cheap for any D)
        w, u = np.linalg.eigh(s @ s.T)
        top = np.argsort(w)[::-1][:m]
        keep = top[w[top] > w[top[0]] * 1e-12] if w[top[0]] > 0 else top[:1]
        p = s.T @ (u[:, keep] / np.sqrt(np.maximum(w[keep], 1e-300)))
        self.p_, _ = np.linalg.qr(p)  # re-orthonormalise in float64
        g = self.p_.T @ self.p_
        self.delta_ = float(np.linalg.norm(g - np.eye(len(g))))
        self.m_ = self.p_.shape[1]
        self.m1_ = min(self.m1, self.m_)
        self.slack_ = 16.0 * (dim + self.m_) * math.sqrt(self.m_) * U64
        self.gamma_ = gamma(dim + 2, U64)  # exact_sqdist's relative error
        g32 = gamma(dim + 2, U32)
        self.eps32_ = 1.01 * g32 / (1 - g32)  # direct_sqdist32: d ≤ d̃(1 + ε) and d ≥ d̃(1 − ε)
        # Level 1 as one float32 GEMM: L₁ = ‖v_x − v_y‖² − K(‖x_c‖² + ‖y_c‖²) with v = fl32(s₁/√(1+δ), r̂₁),
        # r̂₁ the midpoint of the residual interval. Every slack is separable, via (a + b)² ≤ 2(a² + b²):
        # the interval half-widths (≤ ε‖·‖, ε = √(2δ + 2c)), the float64 sketch's rounding (2c), the
        # cast to float32 (‖v − u‖ ≤ u₃₂‖u‖: 4u₃₂) and the float32 expanded form (2(γ_{m₁+3} + 4u₃₂), as
        # ``search.error_bound_coeff``, ≤ 2γ_{m₁+8}); 1.02 covers ‖u‖² ≤ (1 + c)‖x_c‖² and the products.
        self.eps_ = math.sqrt(2 * self.delta_ + 2 * self.slack_)
        self.k1_ = 1.02 * (2 * self.slack_ + 4 * self.eps_ + 4 * U32 + 2 * gamma(self.m1_ + 8, U32))
        two = self.m1_ < self.m_
        self.v_ = np.empty((n, self.m1_ + 1), np.float32)
        self.norm2_ = np.empty(n, np.float64)
        if two:  # the full sketch, for the pair bound over all m directions
            self.sk_ = np.empty((n, self.m_), np.float64)
        for lo in range(0, n, step):
            xc = np.asarray(base[lo:lo + step], np.float64) - self.mean_
            sk = xc @ self.p_
            n2 = _sqnorms(xc)
            self.norm2_[lo:lo + len(xc)] = n2
            self.v_[lo:lo + len(xc)] = self._augment(sk[:, :self.m1_], n2)
            if two:
                self.sk_[lo:lo + len(xc)] = sk
        if not np.isfinite(self.norm2_).all() or self.norm2_.max() > 1e30:
            raise ValueError("base vectors too large (squared norm > 1e30) for a float32 sketch")
        if two:
            self.r_lo_, self.r_hi_ = self._residual_interval(self.norm2_, _sqnorms(self.sk_))
        self.norm_ = np.sqrt(self.norm2_)
        self.b1_ = self._offset(self.v_, self.norm2_)
        if self.device is not None:  # the sketch GEMM, the bounds and their selection run in torch there
            import torch

            self.dev_ = torch.device(self.device)
            self.t_ = {"v": torch.from_numpy(self.v_).to(self.dev_), "b1": torch.from_numpy(self.b1_).to(self.dev_),
                       "p": torch.from_numpy(self.p_).to(self.dev_), "mean": torch.from_numpy(self.mean_).to(self.dev_)}
        return self

    def _augment(self, s1: np.ndarray, norm2: np.ndarray) -> np.ndarray:
        lo, hi = self._residual_interval(norm2, _sqnorms(s1))
        return np.hstack([s1 / math.sqrt(1 + self.delta_), ((lo + hi) / 2)[:, None]]).astype(np.float32)

    def _offset(self, v: np.ndarray, norm2: np.ndarray) -> np.ndarray:
        """fl₃₂(‖v‖² − K·‖x_c‖²): each side's term of the expanded form, slack included."""
        return np.einsum("ij,ij->i", v, v) - (self.k1_ * norm2).astype(np.float32)

    def _residual_interval(self, norm2: np.ndarray, sk2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[lo, hi] containing r = ‖(I − Q) x_c‖, Q the exact projector on span(P)."""
        e = self.slack_ * norm2
        lo = np.sqrt(np.maximum(norm2 - sk2 / (1 - self.delta_) - e, 0))
        hi = np.sqrt(np.maximum(norm2 - sk2 / (1 + self.delta_) + e, 0))
        return lo, hi

    @property
    def nbytes(self) -> int:
        extra = self.sk_.nbytes + 2 * self.norm2_.nbytes if self.m1_ < self.m_ else 0
        extra += self.codes_.nbytes if self.codes_ is not None else 0
        return self.v_.nbytes + 2 * self.norm2_.nbytes + self.b1_.nbytes + self.p_.nbytes + extra

    # -- search ------------------------------------------------------------------------
    def _query(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if self.device is None:
            xc = np.asarray(x, np.float64) - self.mean_
            sx, n2 = xc @ self.p_, _sqnorms(xc)
        else:  # the query's float64 sketch on the device (the same rounding bound holds in any order)
            import torch

            xc = torch.from_numpy(np.asarray(x, np.float64)).to(self.dev_) - self.t_["mean"]
            sx, n2 = (xc @ self.t_["p"]).cpu().numpy(), (xc * xc).sum(1).cpu().numpy()
        v = self._augment(sx[:, :self.m1_], n2)
        a1 = self._offset(v, n2)
        if not np.isfinite(a1).all() or n2.max() > 1e30:
            raise ValueError("query vectors too large (squared norm > 1e30) or not finite")
        # −2·v is exact (a power of two): the GEMM then gives −2⟨v_x, v_y⟩ directly
        q = {"s": sx, "v": v * np.float32(-2), "a1": a1, "norm": np.sqrt(n2)}
        q["rlo"], q["rhi"] = self._residual_interval(n2, _sqnorms(sx))
        return q

    def lower_bounds(self, x: np.ndarray) -> np.ndarray:
        """Certified lower bounds of ‖x − y‖² (float32 nq×N) over the first ``m1`` directions."""
        return self._bounds1(self._query(x))

    def _bounds1(self, q: dict[str, np.ndarray]) -> np.ndarray:
        if self.device is not None:
            return _TorchBounds(self, q).lb.cpu().numpy()
        lb = q["v"] @ self.v_.T
        lb += q["a1"][:, None]
        lb += self.b1_[None]
        return lb

    def _bounds_at(self, q: dict[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
        """L₁ of query row i to base points ``idx[i]`` (nq×c): the same bound in another summation order."""
        return q["a1"][:, None] + self.b1_[idx] + np.einsum("ij,icj->ic", q["v"], self.v_[idx])

    def _bounds(self, q: dict[str, np.ndarray]) -> _HostBounds | _TorchBounds:
        return _TorchBounds(self, q) if self.device is not None else _HostBounds(self._bounds1(q))

    def pair_bounds(self, q: dict[str, np.ndarray], qi: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """The tighter bound over all m directions, for (query, base point) pairs only (float64)."""
        diff = q["s"][qi] - self.sk_[idx]
        sk = np.einsum("ij,ij->i", diff, diff) / (1 + self.delta_)
        gap = np.maximum(np.maximum(q["rlo"][qi] - self.r_hi_[idx], self.r_lo_[idx] - q["rhi"][qi]), 0)
        return sk + gap * gap - self.slack_ * (q["norm"][qi] + self.norm_[idx]) ** 2

    def search(self, queries: np.ndarray, k: int, pair_sqdist,
               budget: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact k nearest base points (float64 sqdist nq×k, int64 index nq×k; ties by index).

        ``pair_sqdist(x, qi, idx)`` computes exact distances of (query row, base row) pairs; it is the
        same function float64 brute force uses, so equal inputs give equal distances. ``budget``: the
        most refined pairs per query before ``PruningDoesNotPay`` is raised.
        """
        k = min(k, self.n_)
        qc = max(1, min(len(queries), self.lb_budget // self.n_))
        out_d = np.empty((len(queries), k))
        out_i = np.empty((len(queries), k), np.int64)
        for lo in range(0, len(queries), qc):
            x = np.ascontiguousarray(queries[lo:lo + qc], np.float32)
            out_d[lo:lo + len(x)], out_i[lo:lo + len(x)] = self._search_chunk(x, k, pair_sqdist, budget)
        self.stats.queries += len(queries)
        return out_d, out_i

    def _refiner(self, x: np.ndarray):
        """(refine(qi, idx) → distances d̃, their error model) for this chunk of queries: exact lattice
        distances where base and queries are pixel lattices, else ``direct_sqdist32``."""
        xq = lattice_codes(x) if self.codes_ is not None else None
        if xq is not None:
            def lattice(qi: np.ndarray, idx: np.ndarray) -> np.ndarray:
                return ssd_uint8(self.codes_, xq, qi, idx) / float(LATTICE * LATTICE)
            return lattice, self.lattice_error_
        return (lambda qi, idx: direct_sqdist32(self.base_, x, qi, idx)), RelativeError(self.eps32_)

    def _upper(self, d: np.ndarray, qi: np.ndarray, nq: int, k: int, err) -> np.ndarray:
        """T: per query, an upper bound on the true k-th distance (k refined points lie within it), and
        the float32 pruning threshold T·(1 + 3γ) rounded up."""
        t = _kth_per_row(np.where(np.isfinite(d), err.hi(d), np.inf), qi, nq, k)
        return t, (t * (1 + 3 * self.gamma_) * (1 + 2.0**-22)).astype(np.float32)

    def _search_chunk(self, x: np.ndarray, k: int, pair_sqdist,
                      budget: float | None) -> tuple[np.ndarray, np.ndarray]:
        """Seed: the ``4·first`` best points by L₁, of which the ``first`` best by L₂, are refined and
        give each query T, an upper bound on its true k-th distance. Sweep: every point with L₁ (then
        L₂) ≤ T(1 + 3γ) is refined, in growing windows of increasing bound, each lowering T. Refining is
        float32 (``direct_sqdist32``, error ≤ ε·d); the finalists, whose float32 distance does not put
        them beyond T(1 + 3γ), get exact float64 distances and are ranked by (distance, index).
        Why exact: a point left out has true d > T(1 + 3γ), so its float64 distance exceeds T(1 + γ),
        and k finalists (true d ≤ T) have float64 distances ≤ T(1 + γ): float64 brute force ranks it
        below them too."""
        nq, n = len(x), self.n_
        limit = np.inf if budget is None else budget * nq
        clock = t_start = time.perf_counter()
        q = self._query(x)
        refine, err = self._refiner(x)
        clock = self.stats.add("sketch", clock)
        lb = self._bounds(q)
        seed_n = min(n, k if self.m1_ == self.m_ else max(self.first, k))
        take = min(n, seed_n if self.m1_ == self.m_ else 4 * seed_n)
        rows = np.arange(nq)
        if take <= 8:  # a few passes of argmin cost less than one partition of the whole row
            part = np.stack([lb.pop_min() for _ in range(take)], 1)
            lb.put(rows[:, None], part, self._bounds_at(q, part))
        else:
            part = lb.smallest(take)
        if take > seed_n:  # rank the seed's candidates by the tighter L₂
            lb2 = self.pair_bounds(q, np.repeat(rows, take), part.ravel()).reshape(nq, take)
            part = np.take_along_axis(part, np.argsort(lb2, axis=1, kind="stable")[:, :seed_n], 1)
        qi0, idx0 = np.repeat(rows, seed_n), part.ravel()
        clock = self.stats.add("bounds", clock)
        d0 = refine(qi0, idx0)
        clock = self.stats.add("refine", clock)
        t, thresh = self._upper(d0, qi0, nq, k, err)
        lb.put(qi0, idx0, np.float32(np.inf))  # refined already
        qi, idx, lb1 = lb.below(thresh)
        del lb
        self.stats.add("bounds", clock)
        # L₂ over all m directions where it is tighter than the GEMM's L₁ (m₁ < m), else L₁ itself
        lb2 = self.pair_bounds(q, qi, idx) if len(qi) and self.m1_ < self.m_ else lb1
        keep = lb2 <= thresh[qi]
        qi, idx, lb2 = qi[keep], idx[keep], lb2[keep]
        # visit the survivors in order of L₂, in geometrically growing windows; each window's
        # distances lower T, which prunes more of the rest
        order = np.lexsort((lb2, qi))
        qi, idx, lb2 = qi[order], idx[order], lb2[order]
        rank = np.arange(len(qi)) - np.searchsorted(qi, rows)[qi]
        got_d, got_q, got_i = [d0], [qi0], [idx0]
        refined, lo, hi = len(qi0), 0, 2
        while len(qi):
            win = (rank >= lo) & (rank < hi)
            refined += int(win.sum())
            if refined > limit:
                raise PruningDoesNotPay(f"{refined} refined pairs for {nq} queries over {n} points")
            clock = time.perf_counter()
            got_d.append(refine(qi[win], idx[win]))
            self.stats.add("refine", clock)
            got_q.append(qi[win])
            got_i.append(idx[win])
            t, thresh = self._upper(np.concatenate(got_d), np.concatenate(got_q), nq, k, err)
            rest = (rank >= hi) & (lb2 <= thresh[qi])
            qi, idx, lb2, rank = qi[rest], idx[rest], lb2[rest], rank[rest]
            lo, hi = hi, hi * 2
            self.stats.rounds += 1
        d32, qa, ia = np.concatenate(got_d), np.concatenate(got_q), np.concatenate(got_i)
        final = ~(err.lo(d32) > t[qa] * (1 + 3 * self.gamma_))  # nan, inf kept
        qa, ia = qa[final], ia[final]
        self.stats.refined_pairs += refined
        self.stats.exact_pairs += len(qa)
        clock = time.perf_counter()
        exact = pair_sqdist(x, qa, ia)
        self.stats.add("exact", clock)
        self.stats.add("total", t_start)
        return best_k(exact, qa, ia, nq, k)


class _HostBounds:
    """The nq×N bound matrix in numpy, with the few operations the search needs."""

    def __init__(self, lb: np.ndarray):
        self.lb = lb

    def pop_min(self) -> np.ndarray:
        i = self.lb.argmin(1)
        self.lb[np.arange(len(i)), i] = np.inf
        return i

    def put(self, rows: np.ndarray, cols: np.ndarray, values) -> None:
        self.lb[rows, cols] = values

    def smallest(self, take: int) -> np.ndarray:
        return np.argpartition(self.lb, take - 1, axis=1)[:, :take]

    def below(self, thresh: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        qi, idx = np.nonzero(self.lb <= thresh[:, None])
        return qi, idx, self.lb[qi, idx]


class _TorchBounds(_HostBounds):
    """The same in torch on ``index.dev_`` (the GPU): the GEMM, the selection; only survivors come back.
    TF32 is off: its 10-bit mantissa would void the float32 rounding bound."""

    def __init__(self, index: SketchIndex, q: dict[str, np.ndarray]):
        import torch

        from .runtime import full_float32

        self.torch, dev, t = torch, index.dev_, index.t_
        with full_float32():
            lb = torch.from_numpy(q["v"]).to(dev) @ t["v"].T
        lb += torch.from_numpy(q["a1"]).to(dev)[:, None]
        lb += t["b1"][None]
        self.lb, self.dev = lb, dev

    def pop_min(self) -> np.ndarray:
        i = self.lb.argmin(1)
        self.lb[self.torch.arange(len(i), device=self.dev), i] = float("inf")
        return i.cpu().numpy()

    def put(self, rows: np.ndarray, cols: np.ndarray, values) -> None:
        t = self.torch
        rows, cols = np.broadcast_arrays(rows, cols)
        vals = t.as_tensor(np.broadcast_to(np.asarray(values, np.float32), rows.shape).copy(), device=self.dev)
        self.lb[t.from_numpy(rows.copy()).to(self.dev), t.from_numpy(cols.copy()).to(self.dev)] = vals

    def smallest(self, take: int) -> np.ndarray:
        return self.torch.topk(self.lb, take, dim=1, largest=False).indices.cpu().numpy()

    def below(self, thresh: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        th = self.torch.from_numpy(thresh).to(self.dev)
        qi, idx = self.torch.nonzero(self.lb <= th[:, None], as_tuple=True)
        vals = self.lb[qi, idx]
        return qi.cpu().numpy(), idx.cpu().numpy(), vals.cpu().numpy()


def _kth_per_row(d: np.ndarray, q: np.ndarray, nq: int, k: int) -> np.ndarray:
    """k-th smallest ``d`` per query row (inf where a row has fewer than k)."""
    order = np.lexsort((d, q))
    q, d = q[order], d[order]
    start = np.searchsorted(q, np.arange(nq))
    count = np.diff(np.append(start, len(q)))
    out = np.full(nq, np.inf)
    has = count >= k
    out[has] = d[start[has] + k - 1]
    return out


def best_k(d: np.ndarray, q: np.ndarray, idx: np.ndarray, nq: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best (distance ``d``, base ``idx``) pairs of each query row ``q``, ties by index (as
    ``np.argsort(kind="stable")`` over a full row); rows with fewer pairs are padded with +inf / -1."""
    order = np.lexsort((idx, d, q))
    q, d, idx = q[order], d[order], idx[order]
    start = np.searchsorted(q, np.arange(nq))
    best_d = np.full((nq, k), np.inf)
    best_i = np.full((nq, k), -1, np.int64)
    count = np.diff(np.append(start, len(q)))
    for j in range(k):
        has = count > j
        best_d[has, j] = d[start[has] + j]
        best_i[has, j] = idx[start[has] + j]
    return best_d, best_i
