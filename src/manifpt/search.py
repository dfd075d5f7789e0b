"""Exact Euclidean k-nearest-neighbour search with a certificate.

Fast search engines (FAISS ``IndexFlatL2``, a torch GEMM) compute ``‖x‖² + ‖y‖² − 2⟨x, y⟩`` in
float32, which can mis-order neighbours whose distances differ by less than the rounding error.
manifpt wants the *exact* nearest real sample (the float64 brute-force answer), so search runs in
three steps:

1. **candidates**: the fast float32 engine returns the ``K > k`` (default 128: as cheap as K = 1 in
   FAISS, and wide enough that dense clusters rarely need step 4's fallback) approximately nearest points of
   each query, on vectors centred at the base mean (distances are translation-invariant and
   centring shrinks the norms that the rounding error scales with);
2. **bound**: the float32 error of each pair obeys the rigorous bound
   ``|d̃ − d| ≤ b = (γ_{D+3} + 4u)(‖x_c‖ + ‖y_c‖)²`` (u = 2⁻²⁴, γ_n = nu/(1 − nu)). The k smallest
   ``d̃ + b`` give U_k ≥ the true k-th distance, so only candidates with ``d̃ − b ≤ U_k`` can be in
   the top k;
3. **refine**: exactly those candidates get their distance recomputed exactly (float64 on the
   stored float32 vectors) and are sorted by (distance, index): ties go to the lowest index, as
   with ``np.argmin``;
4. **certify**: every point outside the candidates has true distance ≥ d̃_K − b(‖x_c‖, max‖y_c‖).
   (Tighter: points with ‖y_c‖ > ‖x_c‖ + √U_k are excluded by the reverse triangle inequality.)
   If that exceeds U_k, the answer is proven exact. Otherwise (queries in dense clusters) the
   query's full approximate row is computed, in batches, and the same bound selects every point
   that can be in the top k.

A second engine, ``pruned`` (``manifpt.pruned``), does less arithmetic than brute force instead of
certifying a fast one: a PCA sketch bounds every distance from below and exact float64 distances are
computed only where the bound cannot exclude a point. ``auto`` picks it on CPU when the vectors are
long and the base is large (``PRUNED_MIN_DIM ≤ D ≤ PRUNED_MAX_DIM``, ``N ≥ PRUNED_MIN_BASE``: where
``benchmarks/scale.py`` measured it faster), and falls back to FAISS for the rest of a search once a
probe chunk of 64 queries shows that pruning does not pay (``pruned_budget``: on uniform noise no
direction dominates and nothing is pruned).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from .progress import STAGES
from .pruned import PruningDoesNotPay, best_k

U32 = 2.0**-24
#: ``auto`` uses the pruned engine on CPU within these sizes (measured faster than FAISS there)
PRUNED_MIN_DIM, PRUNED_MAX_DIM, PRUNED_MIN_BASE = 3072, 16384, 10000
#: one refined pair costs about this many float32 GEMM multiply-adds per dimension (a gathered row,
#: read once; fitted on benchmarks/scale.py on the 2-core VM)
REFINE_COST = 40.0


def pruned_budget(n: int, dim: int, m: int) -> float:
    """Refined pairs per query below which the pruned search costs < 0.9 of brute force: its GEMM
    costs ~N·(m + 1) (float32), the query's sketch ~2·D·m (float64), each refined pair ~REFINE_COST·D,
    brute force N·D."""
    return max(0.0, (0.9 - (m + 1) / dim - 2.0 * m / n) * n / REFINE_COST)


#: λ of the probabilistic bound: it fails with probability ≤ 2n·exp(−λ²/2) ≈ 1e-33 per pair for n = 3072.
PROB_LAMBDA = 13.0


def error_bound_coeff(dim: int, bound: str = "rigorous") -> float:
    """Times (‖x_c‖ + ‖y_c‖)² it bounds the float32 error of d̃ = ‖x‖² + ‖y‖² − 2⟨x, y⟩.

    ``rigorous``: γ_{D+3} + 4u, the worst case over every summation order (Higham, Thm. 3.1).
    ``probabilistic``: exp(λ√n·u + nu²/(1 − u)) − 1 + 4u with λ = 13 (Higham & Mary 2019, Thm. 3.1):
    holds unless rounding errors conspire, with probability ≥ 1 − 2n·exp(−λ²(1 − u)²/2).
    A 1 % safety margin is added to both.
    """
    n = dim + 3
    if bound == "rigorous":
        gamma = n * U32 / (1 - n * U32)
    elif bound == "probabilistic":
        gamma = math.expm1(PROB_LAMBDA * math.sqrt(n) * U32 + n * U32**2 / (1 - U32))
    else:
        raise ValueError(f"unknown error bound '{bound}' (rigorous, probabilistic)")
    return 1.01 * (gamma + 4 * U32)


def sketch_dim_for(dim: int) -> int:
    """The pruned engine's sketch size: D/24 within [64, 512] (its GEMM then costs ~1/12 of brute
    force in float64; measured on photo crops, a larger sketch prunes more but costs more)."""
    return int(min(512, max(64, dim // 24)))


def exact_sqdist(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Σ (x − y)² in float64 along the last axis (broadcasting)."""
    d = np.subtract(x, y, dtype=np.float64)
    return np.einsum("...i,...i->...", d, d)


@dataclass
class SearchStats:
    """How often the certificate held; exposed for benchmarks and tests."""

    queries: int = 0
    fallbacks: int = 0  # queries that needed their full approximate row
    engine_switches: int = 0  # auto: pruned search found not to pay, FAISS took over
    refined_pairs: int = 0  # (query, point) pairs whose distance was computed exactly
    engine_s: float = 0.0  # wall time inside the float32 engine (FAISS / torch top-K)
    total_s: float = 0.0  # wall time of ``search`` in all: total_s / engine_s is the certificate's cost


class ExactKNN:
    """Exact k-NN over a fixed float32 base; ``backend`` 'faiss' (CPU), 'torch' (GPU or CPU), 'pruned'
    (PCA-sketch lower bounds, CPU) or 'auto'.

    ``fit`` keeps a reference to ``base`` (a memmap or ``cache.DiskRows`` is fine) and, for the float32
    engines, an in-memory centred copy; 'pruned' keeps only its sketch (sized to ``memory_budget``
    bytes when given) and reads base rows when it refines them. ``search`` returns exact float64
    squared distances cast to float32 and int64 indices, both sorted ascending with ties broken by
    index; every engine gives the same answer.
    """

    def __init__(self, backend: str = "auto", candidates: int = 128, bound: str = "rigorous",
                 device: str | None = None, query_chunk: int = 4096, base_chunk: int = 65536,
                 sketch_dim: int | None = None, memory_budget: int | None = None):
        self.backend, self.candidates, self.bound, self.device = backend, candidates, bound, device
        self.query_chunk, self.base_chunk, self.sketch_dim = query_chunk, base_chunk, sketch_dim
        self.memory_budget = memory_budget
        self.stats = SearchStats()

    # -- set-up -----------------------------------------------------------------------
    def fit(self, base: np.ndarray) -> ExactKNN:
        with STAGES("index", len(base)):
            return self._fit(base)

    def _fit(self, base: np.ndarray) -> ExactKNN:
        if base.dtype != np.float32 or base.ndim != 2:
            raise TypeError(f"base must be float32 N×D, got {base.dtype} {base.shape}")
        if len(base) == 0:
            raise ValueError("cannot search an empty base set")
        self.base_ = base
        self.backend_ = self._resolve_backend(base.shape)
        if self.backend_ == "pruned":
            from .pruned import SketchIndex

            n, dim = base.shape
            opts = {"m": self.sketch_dim or sketch_dim_for(dim)}
            if (b := self.memory_budget) is not None:
                # the sketch ≤ ¼ of the budget, the bound matrix and float64 blocks ≤ ⅒, the PCA sample ≤ ⅛
                opts["m"] = max(8, min(opts["m"], b // (16 * n) - 1))
                # the uint8 copy of a pixel-lattice base (RGB) ≤ ½: out of core it stays on disk as float32
                opts.update(lb_budget=max(n, b // 40), chunk=max(dim, b // 80),
                            sample=max(2 * opts["m"], min(2048, b // (64 * dim))), codes_budget=b // 2)
            self.sketch_ = SketchIndex(m1=opts["m"], device=self._sketch_device(), **opts).fit(base)
            return self
        self._fit_float32(base)
        return self

    def _fit_float32(self, base: np.ndarray) -> None:
        self.mean_ = np.asarray(base.mean(axis=0, dtype=np.float64), np.float32)
        if self.backend_ == "faiss":
            import faiss

            # The index keeps its own copy of the centred base (and its norms, computed once);
            # ``centred_`` is a view of that copy, so the base is not held twice in memory.
            self._index = faiss.IndexFlatL2(base.shape[1])
            for lo in range(0, len(base), self.base_chunk):
                self._index.add(np.ascontiguousarray(base[lo:lo + self.base_chunk] - self.mean_))
            self.centred_ = faiss.rev_swig_ptr(self._index.get_xb(), base.size).reshape(base.shape)
        else:
            self.centred_ = np.empty(base.shape, np.float32)
            for lo in range(0, len(base), self.base_chunk):
                np.subtract(base[lo:lo + self.base_chunk], self.mean_, out=self.centred_[lo:lo + self.base_chunk])
        self.norms_ = np.sqrt(np.einsum("ij,ij->i", self.centred_, self.centred_, dtype=np.float64))
        self.sqnorms32_ = np.einsum("ij,ij->i", self.centred_, self.centred_)  # float32, as the engines compute them
        self.radius_ = float(self.norms_.max())
        self.coeff_ = error_bound_coeff(base.shape[1], self.bound)
        if self.backend_ == "torch":
            import torch

            from .runtime import default_device

            self._dev = default_device(self.device)
            self._base_t = torch.from_numpy(self.centred_).to(self._dev)
            self._base_norm_t = (self._base_t.double() ** 2).sum(1).float()

    def _sketch_device(self) -> str | None:
        """Where the pruned engine's GEMM and bounds run: a CUDA device when present (and not refused
        with ``device='cpu'``), else numpy on the CPU. Refinement always reads rows on the host."""
        if self.device not in (None, "cpu") and str(self.device).startswith("cuda"):
            return str(self.device)
        import torch

        return "cuda" if self.device is None and torch.cuda.is_available() else None

    def _resolve_backend(self, shape: tuple[int, int]) -> str:
        if self.backend != "auto":
            if self.backend not in ("faiss", "torch", "pruned"):
                raise ValueError(f"unknown search backend '{self.backend}' (auto, faiss, torch, pruned)")
            return self.backend
        import torch

        n, dim = shape
        if torch.cuda.is_available() and self.device != "cpu":
            # brute force on the GPU while the base fits in half its free memory, else the pruned
            # engine with its sketch there and the base in host memory (or on disk)
            free = torch.cuda.mem_get_info(self.device)[0]
            return "torch" if 2 * n * dim * 4 <= free else "pruned"
        return "pruned" if PRUNED_MIN_DIM <= dim <= PRUNED_MAX_DIM and n >= PRUNED_MIN_BASE else "faiss"

    # -- float32 engines --------------------------------------------------------------
    def _approx_topk(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.backend_ == "faiss":
            d, i = self._index.search(q, k)
            return d, i.astype(np.int64)
        import torch

        qt = torch.from_numpy(q).to(self._dev)
        qn = (qt.double() ** 2).sum(1, keepdim=True).float()
        from .runtime import full_float32

        best_d = best_i = None
        with full_float32():  # TF32 would void the error bound
            for lo in range(0, len(self._base_t), self.base_chunk):
                yb = self._base_t[lo:lo + self.base_chunk]
                d = (qn + self._base_norm_t[lo:lo + self.base_chunk][None] - 2.0 * (qt @ yb.T)).clamp_min_(0)
                kk = min(k, d.shape[1])
                dv, di = torch.topk(d, kk, dim=1, largest=False)
                di = di + lo
                if best_d is None:
                    best_d, best_i = dv, di
                else:
                    cat_d, cat_i = torch.cat([best_d, dv], 1), torch.cat([best_i, di], 1)
                    best_d, order = torch.topk(cat_d, min(k, cat_d.shape[1]), dim=1, largest=False)
                    best_i = torch.gather(cat_i, 1, order)
        return best_d.cpu().numpy(), best_i.cpu().numpy().astype(np.int64)

    def _approx_rows(self, q: np.ndarray) -> np.ndarray:
        """Full float32 approximate distance rows (fallback path), same arithmetic as the engines."""
        qn = np.einsum("ij,ij->i", q, q)[:, None]
        out = np.empty((len(q), len(self.centred_)), np.float32)
        for lo in range(0, len(self.centred_), self.base_chunk):
            yb = self.centred_[lo:lo + self.base_chunk]
            out[:, lo:lo + len(yb)] = qn + self.sqnorms32_[lo:lo + len(yb)][None] - 2.0 * (q @ yb.T)
        return np.maximum(out, 0, out=out)

    # -- exact search -----------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Exact k nearest base points of each query: (sqdist float32 nq×k, index int64 nq×k)."""
        d, i = self.search_exact(queries, k)
        return d.astype(np.float32), i

    def search_exact(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """``search`` with the exact float64 distances (what merging the answers of shards needs)."""
        with STAGES("search", len(queries)):
            return self._search(queries, k)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        t0 = time.perf_counter()
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.base_.shape[1]:
            raise ValueError(f"queries must be N×{self.base_.shape[1]}, got {queries.shape}")
        n_base = len(self.base_)
        k = min(k, n_base)
        kc = min(max(self.candidates, 2 * k), n_base)
        out_d = np.empty((len(queries), k), np.float64)
        out_i = np.empty((len(queries), k), np.int64)
        start = 0
        while self.backend_ == "pruned" and start < len(queries):
            # auto: a small first chunk shows cheaply whether pruning pays on this data
            step = 64 if self.backend == "auto" and self.stats.queries == 0 else self.query_chunk
            x = queries[start:start + step]
            before = self.sketch_.stats.refined_pairs
            te = time.perf_counter()
            try:
                out_d[start:start + len(x)], out_i[start:start + len(x)] = self.sketch_.search(
                    x, k, lambda xq, qi, idx: self._pair_sqdist(xq, qi, idx),
                    budget=pruned_budget(n_base, self.base_.shape[1], self.sketch_.m_)
                    if self.backend == "auto" else None)
            except PruningDoesNotPay:
                self.backend_ = "faiss"  # brute force from here on (this chunk included)
                self.stats.engine_switches += 1
                self._fit_float32(self.base_)
                break
            finally:
                self.stats.engine_s += time.perf_counter() - te
                self.stats.refined_pairs += self.sketch_.stats.refined_pairs - before
            self.stats.queries += len(x)
            start += len(x)
        for lo in range(start, len(queries), self.query_chunk):
            x = queries[lo:lo + self.query_chunk]
            xc = x - self.mean_
            xn = np.sqrt(np.einsum("ij,ij->i", xc, xc, dtype=np.float64))
            te = time.perf_counter()
            approx, cand = self._approx_topk(xc, kc)
            self.stats.engine_s += time.perf_counter() - te
            approx = approx.astype(np.float64)
            # exact distances of the k approximately nearest: their largest bounds the true k-th
            first = self._pair_sqdist(x, np.repeat(np.arange(len(x)), k), cand[:, :k].ravel()).reshape(len(x), k)
            mask, upper_k = self._plausible(approx, xn[:, None], self.norms_[cand], k, first.max(1))
            # A point outside the candidates has d̃ ≥ d̃_K. If ‖y_c‖ > r = ‖x_c‖ + √U_k, the reverse
            # triangle inequality gives d ≥ (‖y_c‖ − ‖x_c‖)² > U_k; otherwise d ≥ d̃_K − b(‖x_c‖, r).
            # Either way, when d̃_K − b(‖x_c‖, min(r, R)) > U_k it cannot be in the top k.
            r = np.minimum((xn + np.sqrt(upper_k)) * (1 + 1e-6), self.radius_)
            ok = (kc >= n_base) | (approx[:, -1] - self.coeff_ * (xn + r) ** 2 > upper_k)
            qi, ci = np.nonzero(mask & ok[:, None])
            d, i = self._best_pairs(x, qi, cand[qi, ci], len(x), k)
            todo = np.flatnonzero(~ok)
            self.stats.queries += len(x)
            self.stats.fallbacks += len(todo)
            for j0 in range(0, len(todo), 256):  # uncertified: full approximate rows, in batches
                sel = todo[j0:j0 + 256]
                rows = self._approx_rows(xc[sel]).astype(np.float64)
                qi, idx = np.nonzero(self._plausible(rows, xn[sel, None], self.norms_[None], k, upper_k[sel])[0])
                d[sel], i[sel] = self._best_pairs(x[sel], qi, idx, len(sel), k)
            out_d[lo:lo + len(x)] = d
            out_i[lo:lo + len(x)] = i
        self.stats.total_s += time.perf_counter() - t0
        return out_d, out_i

    def _plausible(self, approx: np.ndarray, xn: np.ndarray, yn: np.ndarray, k: int,
                   upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pairs that may be among the true k nearest, and U_k, an upper bound on the k-th true distance.

        With b = coeff·(‖x_c‖ + ‖y_c‖)², every pair has d̃ − b ≤ d ≤ d̃ + b. U_k is the smaller of
        ``upper`` (the largest exact distance of k known points) and the k-th smallest d̃ + b; a point
        with d̃ − b > U_k cannot be in the top k. Each row keeps at least the k pairs that define U_k.
        """
        b = self.coeff_ * (xn + yn) ** 2
        upper_k = np.minimum(np.partition(approx + b, k - 1, axis=-1)[..., k - 1], upper)
        return approx - b <= upper_k[..., None], upper_k

    def _pair_sqdist(self, x: np.ndarray, qi: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Exact ‖x[qi] − base[idx]‖² per pair, in blocks that stay in cache (a single big float64
        temporary costs more in page faults than the arithmetic)."""
        exact = np.empty(len(qi), np.float64)
        step = max(1, 2**18 // x.shape[1])
        for lo in range(0, len(qi), step):
            sl = slice(lo, lo + step)
            exact[sl] = exact_sqdist(x[qi[sl]], self.base_[idx[sl]])
        return exact

    def _best_pairs(self, x: np.ndarray, qi: np.ndarray, idx: np.ndarray, nq: int,
                    k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact distances of (query ``qi``, base ``idx``) pairs → k best per query, ties by index.

        Rows of queries without pairs (handled elsewhere) are left as +inf / -1.
        """
        exact = self._pair_sqdist(x, qi, idx)
        self.stats.refined_pairs += len(qi)
        return best_k(exact, qi, idx, nq, k)


def gather_rows(base: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``base[idx]`` reading each needed row once, in order (kind to memory-mapped files)."""
    uniq, inv = np.unique(idx, return_inverse=True)
    return np.asarray(base[uniq])[inv.reshape(-1)] if len(idx) else np.empty((0, base.shape[1]), base.dtype)
