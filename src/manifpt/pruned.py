"""Pruned exact k-NN: a PCA sketch bounds every distance from below, so few exact distances are computed.

Brute force computes N·D multiply-adds per query and is already near the CPU's GEMM roofline; only
doing less arithmetic, while staying exact, goes further. With the base centred at μ, an orthonormal
basis P (D×m) of its top m principal directions (from a sample), and for every point the sketch
s = Pᵀ(y − μ) and the residual norm r = ‖(y − μ) − P s‖:

    ‖x − y‖² = ‖s_x − s_y‖² + ‖res_x − res_y‖²  ≥  ‖s_x − s_y‖² + (r_x − r_y)²  =: L(x, y)

(Pythagoras on the orthogonal split, the reverse triangle inequality on the complement). A search
computes L to every base point (one nq×m by m×N float64 GEMM: m/D of brute force's arithmetic), then
exact float64 distances in increasing order of L, until every remaining L exceeds the k-th best exact
distance. What is never computed cannot be in the top k, so the answer is exact by construction.

A cascade makes the bound tighter where it matters: the principal directions are nested, so one
sketch of m columns holds every shorter one. L over the first ``m1`` columns is computed for every
base point (the GEMM); a point that it cannot prune gets L over all m columns (m multiply-adds, not
D) and only a point that this cannot prune gets its exact distance. On 64×64 photo crops (N = 10k),
L with 512 columns leaves ~20 points per query that need their exact distance, with 64 columns ~170.
``ExactKNN`` uses one level (m₁ = m): at N = 50k the per-pair gathers of the second level cost more
than the GEMM over all m columns (7.4 s against 0.25 s for 200 queries).

Rounding. "Exact" means equal to float64 brute force (``search.exact_sqdist``), ties by index. The
computed P is not exactly orthonormal (δ = ‖PᵀP − I‖_F is measured, ~1e-15) and every float64 sum
rounds, so L is used only through a certified lower value: the sketch term is divided by 1 + δ, the
residual norms are intervals (‖s‖² scaled by 1/(1 ± δ)), and an absolute slack c·(‖x_c‖ + ‖y_c‖)²
with c = 16·(D + m)·√m·u₆₄ (u₆₄ = 2⁻⁵³) covers the GEMMs' and norms' rounding (Higham's γ_n bounds,
with a safety factor of 4). A point is pruned only if that lower value exceeds d̂_k·(1 + 2γ_D), where
d̂_k is the computed k-th distance and γ_D = (D + 2)·u₆₄ bounds exact_sqdist's own rounding; its
computed distance is then strictly larger than d̂_k, so float64 brute force would not pick it either
(tested at near-ties, duplicates, far-off queries and m ≥ rank of the base).

The engine reads base rows only for the pairs it refines (sorted, per round), so the base can stay in
an on-disk memmap: RAM holds the sketches (N·m float64), the norms and one batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

U64 = 2.0**-53


class PruningDoesNotPay(RuntimeError):
    """Raised when a search refines more than its budget: brute force is cheaper on this data."""


@dataclass
class PrunedStats:
    queries: int = 0
    refined_pairs: int = 0  # exact distances computed
    rounds: int = 0


def _sqnorms(a: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, a)


class SketchIndex:
    """The PCA-sketch lower bound over a fixed float32 base (in memory or a memmap)."""

    def __init__(self, m: int = 512, m1: int = 64, sample: int = 2048, seed: int = 0, chunk: int = 4096,
                 first: int = 4, lb_budget: int = 2**24):
        self.m, self.m1, self.sample, self.seed, self.chunk = m, m1, sample, seed, chunk
        self.first, self.lb_budget = first, lb_budget
        self.stats = PrunedStats()

    # -- build -------------------------------------------------------------------------
    def fit(self, base: np.ndarray) -> SketchIndex:
        n, dim = base.shape
        self.base_, self.dim_ = base, dim
        self.mean_ = np.zeros(dim, np.float64)
        for lo in range(0, n, self.chunk):
            self.mean_ += base[lo:lo + self.chunk].sum(0, dtype=np.float64)
        self.mean_ /= n
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
        self.slack_ = 16.0 * (dim + self.m_) * math.sqrt(self.m_) * U64
        self.gamma_ = (dim + 2) * U64
        self.sk_ = np.empty((n, self.m_), np.float64)
        self.norm2_ = np.empty(n, np.float64)
        for lo in range(0, n, self.chunk):
            xc = np.asarray(base[lo:lo + self.chunk], np.float64) - self.mean_
            self.sk_[lo:lo + len(xc)] = xc @ self.p_
            self.norm2_[lo:lo + len(xc)] = _sqnorms(xc)
        self.m1_ = min(self.m1, self.m_)
        self.r_lo_, self.r_hi_ = self._residual_interval(self.norm2_, _sqnorms(self.sk_))
        self.norm_ = np.sqrt(self.norm2_)
        # Level 1 as one GEMM: L₁ = ‖u_x − u_y‖² − K(‖x_c‖² + ‖y_c‖²) with u = (s₁/√(1+δ), r̂₁), r̂₁ the
        # midpoint of the residual interval. Every slack is made separable with (a + b)² ≤ 2(a² + b²):
        # the interval half-widths (≤ ε‖·‖, ε = √(2δ + 2c)) and the expanded form's rounding.
        self.eps_ = math.sqrt(2 * self.delta_ + 2 * self.slack_)
        self.k1_ = 2 * self.slack_ + 4 * self.eps_
        self.u_ = self._augment(self.sk_[:, :self.m1_], self.norm2_)
        self.b1_ = _sqnorms(self.u_) - self.k1_ * self.norm2_
        return self

    def _augment(self, s1: np.ndarray, norm2: np.ndarray) -> np.ndarray:
        lo, hi = self._residual_interval(norm2, _sqnorms(s1))
        return np.hstack([s1 / math.sqrt(1 + self.delta_), ((lo + hi) / 2)[:, None]])

    def _residual_interval(self, norm2: np.ndarray, sk2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[lo, hi] containing r = ‖(I − Q) x_c‖, Q the exact projector on span(P)."""
        e = self.slack_ * norm2
        lo = np.sqrt(np.maximum(norm2 - sk2 / (1 - self.delta_) - e, 0))
        hi = np.sqrt(np.maximum(norm2 - sk2 / (1 + self.delta_) + e, 0))
        return lo, hi

    @property
    def nbytes(self) -> int:
        return self.sk_.nbytes + self.u_.nbytes + 5 * self.norm2_.nbytes + self.p_.nbytes

    # -- search ------------------------------------------------------------------------
    def _query(self, x: np.ndarray) -> dict[str, np.ndarray]:
        xc = np.asarray(x, np.float64) - self.mean_
        sx = xc @ self.p_
        n2 = _sqnorms(xc)
        u = self._augment(sx[:, :self.m1_], n2)
        q = {"s": sx, "u": u, "a1": _sqnorms(u) - self.k1_ * n2, "norm": np.sqrt(n2)}
        q["rlo"], q["rhi"] = self._residual_interval(n2, _sqnorms(sx))
        return q

    def lower_bounds(self, x: np.ndarray) -> np.ndarray:
        """Certified lower bounds of ‖x − y‖² (float64 nq×N) over the first ``m1`` directions."""
        return self._bounds1(self._query(x))

    def _bounds1(self, q: dict[str, np.ndarray]) -> np.ndarray:
        lb = q["u"] @ (-2.0 * self.u_.T)
        lb += q["a1"][:, None]
        lb += self.b1_[None]
        return lb

    def _bounds_at(self, q: dict[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
        """L₁ of query row i to base points ``idx[i]`` (nq×c), as ``_bounds1`` computes it."""
        u = self.u_[idx]
        return q["a1"][:, None] + self.b1_[idx] - 2.0 * np.einsum("ij,icj->ic", q["u"], u)

    def pair_bounds(self, q: dict[str, np.ndarray], qi: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """The tighter bound over all m directions, for (query, base point) pairs only."""
        diff = q["s"][qi] - self.sk_[idx]
        sk = np.einsum("ij,ij->i", diff, diff) / (1 + self.delta_)
        gap = np.maximum(np.maximum(q["rlo"][qi] - self.r_hi_[idx], self.r_lo_[idx] - q["rhi"][qi]), 0)
        return sk + gap * gap - self.slack_ * (q["norm"][qi] + self.norm_[idx]) ** 2

    def search(self, queries: np.ndarray, k: int, pair_sqdist,
               budget: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact k nearest base points (float64 sqdist nq×k, int64 index nq×k; ties by index).

        ``pair_sqdist(x, qi, idx)`` computes exact distances of (query row, base row) pairs; it is the
        same function float64 brute force uses, so equal inputs give equal distances. ``budget``: the
        most exact distances per query before ``PruningDoesNotPay`` is raised.
        """
        n = len(self.sk_)
        k = min(k, n)
        qc = max(1, min(len(queries), self.lb_budget // n))
        out_d = np.empty((len(queries), k))
        out_i = np.empty((len(queries), k), np.int64)
        for lo in range(0, len(queries), qc):
            x = queries[lo:lo + qc]
            out_d[lo:lo + len(x)], out_i[lo:lo + len(x)] = self._search_chunk(x, k, pair_sqdist, budget)
        self.stats.queries += len(queries)
        return out_d, out_i

    def _search_chunk(self, x: np.ndarray, k: int, pair_sqdist,
                      budget: float | None) -> tuple[np.ndarray, np.ndarray]:
        """Two phases. Seed: the ``4·first`` best points by L₁, of which the ``first`` best by L₂ get exact
        distances, give each query a k-th distance d̂_k. Sweep: every point with L₁ ≤ d̂_k(1 + 2γ) gets
        L₂, and every point with L₂ below the same threshold its exact distance. Points the seed
        already refined are not refined again; everything else was pruned by a certified bound."""
        nq, n = len(x), len(self.sk_)
        limit = np.inf if budget is None else budget * nq
        q = self._query(x)
        lb = self._bounds1(q)
        seed_n = min(n, k if self.m1_ == self.m_ else max(self.first, k))
        take = min(n, seed_n if self.m1_ == self.m_ else 4 * seed_n)
        if take <= 8:  # a few passes of argmin cost less than one argpartition of the whole row
            part = np.empty((nq, take), np.int64)
            for j in range(take):
                part[:, j] = lb.argmin(1)
                lb[np.arange(nq), part[:, j]] = np.inf
            lb[np.arange(nq)[:, None], part] = self._bounds_at(q, part)
        else:
            part = np.argpartition(lb, take - 1, axis=1)[:, :take]
        qi = np.repeat(np.arange(nq), take)
        idx = part.ravel()
        if take > seed_n:  # rank the seed's candidates by the tighter L₂
            lb2 = self.pair_bounds(q, qi, idx).reshape(nq, take)
            part = np.take_along_axis(part, np.argsort(lb2, axis=1, kind="stable")[:, :seed_n], 1)
        qi0, idx0 = np.repeat(np.arange(nq), seed_n), part.ravel()
        d0 = pair_sqdist(x, qi0, idx0)
        kth = _kth_per_row(d0, qi0, nq, k)
        thresh = kth * (1 + 2 * self.gamma_)
        lb[qi0, idx0] = np.inf  # refined already
        qi, idx = np.nonzero(lb <= thresh[:, None])
        # L₂ over all m directions where it is tighter than the GEMM's L₁ (m₁ < m), else L₁ itself
        lb2 = self.pair_bounds(q, qi, idx) if len(qi) and self.m1_ < self.m_ else lb[qi, idx]
        keep = lb2 <= thresh[qi]
        qi, idx, lb2 = qi[keep], idx[keep], lb2[keep]
        # visit the survivors in order of L₂, in geometrically growing windows; each window's exact
        # distances lower d̂_k, which prunes more of the rest
        order = np.lexsort((lb2, qi))
        qi, idx, lb2 = qi[order], idx[order], lb2[order]
        rank = np.arange(len(qi)) - np.searchsorted(qi, np.arange(nq))[qi]
        got_d, got_q, got_i = [d0], [qi0], [idx0]
        refined, lo, hi = len(qi0), 0, 2
        while len(qi):
            win = (rank >= lo) & (rank < hi)
            refined += int(win.sum())
            if refined > limit:
                raise PruningDoesNotPay(f"{refined} exact distances for {nq} queries over {n} points")
            got_d.append(pair_sqdist(x, qi[win], idx[win]))
            got_q.append(qi[win])
            got_i.append(idx[win])
            kth = _kth_per_row(np.concatenate(got_d), np.concatenate(got_q), nq, k)
            thresh = kth * (1 + 2 * self.gamma_)
            rest = (rank >= hi) & (lb2 <= thresh[qi])
            qi, idx, lb2, rank = qi[rest], idx[rest], lb2[rest], rank[rest]
            lo, hi = hi, hi * 2
            self.stats.rounds += 1
        self.stats.refined_pairs += refined
        return best_k(np.concatenate(got_d), np.concatenate(got_q), np.concatenate(got_i), nq, k)


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
