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

    def __init__(self, m: int = 128, sample: int = 2048, seed: int = 0, chunk: int = 8192,
                 first: int = 16, lb_budget: int = 2**24):
        self.m, self.sample, self.seed, self.chunk = m, sample, seed, chunk
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
        self.sk2_ = _sqnorms(self.sk_)
        self.r_lo_, self.r_hi_ = self._residual_interval(self.norm2_, self.sk2_)
        self.norm_ = np.sqrt(self.norm2_)
        return self

    def _residual_interval(self, norm2: np.ndarray, sk2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[lo, hi] containing r = ‖(I − Q) x_c‖, Q the exact projector on span(P)."""
        e = self.slack_ * norm2
        lo = np.sqrt(np.maximum(norm2 - sk2 / (1 - self.delta_) - e, 0))
        hi = np.sqrt(np.maximum(norm2 - sk2 / (1 + self.delta_) + e, 0))
        return lo, hi

    @property
    def nbytes(self) -> int:
        return self.sk_.nbytes + 4 * self.norm2_.nbytes + self.p_.nbytes

    # -- search ------------------------------------------------------------------------
    def lower_bounds(self, x: np.ndarray) -> np.ndarray:
        """Certified lower bounds of ‖x − y‖² (float64 nq×N) for float32 queries ``x``."""
        xc = np.asarray(x, np.float64) - self.mean_
        sx = xc @ self.p_
        n2 = _sqnorms(xc)
        s2 = _sqnorms(sx)
        rlo, rhi = self._residual_interval(n2, s2)
        sk = s2[:, None] + self.sk2_[None] - 2.0 * (sx @ self.sk_.T)
        np.maximum(sk, 0, out=sk)
        sk /= 1 + self.delta_
        gap = np.maximum(np.maximum(rlo[:, None] - self.r_hi_[None], self.r_lo_[None] - rhi[:, None]), 0)
        sk += gap * gap
        sk -= self.slack_ * (np.sqrt(n2)[:, None] + self.norm_[None]) ** 2
        return sk

    def search(self, queries: np.ndarray, k: int, pair_sqdist,
               budget: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact k nearest base points (float64 sqdist nq×k, int64 index nq×k; ties by index).

        ``pair_sqdist(x, qi, idx)`` computes exact distances of (query row, base row) pairs; it is the
        same function float64 brute force uses, so equal inputs give equal distances. ``budget``: the
        most exact distances per query (fraction of the base) before ``PruningDoesNotPay`` is raised.
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
        nq, n = len(x), len(self.sk_)
        limit = np.inf if budget is None else budget * n * nq
        refined = 0
        lb = self.lower_bounds(x)
        done_d: list[np.ndarray] = []
        done_q: list[np.ndarray] = []
        done_i: list[np.ndarray] = []
        thresh = np.full(nq, np.inf)
        size = max(self.first, 2 * k)
        while True:
            # the next ``size`` unvisited points of each query in order of L, among those L cannot prune
            live = lb <= thresh[:, None]
            counts = live.sum(1)
            if not counts.any():
                break
            take = min(size, n)
            masked = np.where(live, lb, np.inf)
            part = np.argpartition(masked, take - 1, axis=1)[:, :take] if take < n else \
                np.broadcast_to(np.arange(n), (nq, n))
            sel = np.take_along_axis(masked, part, 1) < np.inf
            qi, ci = np.nonzero(sel)
            refined += len(qi)
            if refined > limit:
                raise PruningDoesNotPay(f"{refined} exact distances for {nq} queries over {n} points")
            idx = part[qi, ci]
            d = pair_sqdist(x, qi, idx)
            self.stats.refined_pairs += len(qi)
            self.stats.rounds += 1
            lb[qi, idx] = np.inf  # visited
            done_d.append(d)
            done_q.append(qi)
            done_i.append(idx)
            dq, qq, iq = (np.concatenate(a) for a in (done_d, done_q, done_i))
            kth = _kth_per_row(dq, qq, nq, k)
            thresh = np.where(np.isfinite(kth), kth * (1 + 2 * self.gamma_), np.inf)
            size *= 4
        dq, qq, iq = (np.concatenate(a) for a in (done_d, done_q, done_i))
        return _best_k(dq, qq, iq, nq, k)


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


def _best_k(d: np.ndarray, q: np.ndarray, idx: np.ndarray, nq: int, k: int) -> tuple[np.ndarray, np.ndarray]:
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
