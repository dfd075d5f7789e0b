"""Exact Euclidean k-nearest-neighbour search with a certificate.

Fast search engines (FAISS ``IndexFlatL2``, a torch GEMM) compute ``‖x‖² + ‖y‖² − 2⟨x, y⟩`` in
float32, which can mis-order neighbours whose distances differ by less than the rounding error.
manifpt wants the *exact* nearest real sample (the float64 brute-force answer), so search runs in
three steps:

1. **candidates**: the fast float32 engine returns the ``K > k`` approximately nearest points of
   each query, on vectors centred at the base mean (distances are translation-invariant and
   centring shrinks the norms that the rounding error scales with);
2. **refine**: the candidates' distances are recomputed exactly (float64 on the stored float32
   vectors) and sorted by (distance, index), i.e. ties go to the lowest index like ``np.argmin``;
3. **certify**: with the rigorous bound ``|d̃ − d| ≤ b = (γ_{D+3} + 4u)(‖x_c‖ + max‖y_c‖)²`` on the
   float32 error (u = 2⁻²⁴, γ_n = nu/(1 − nu)), every point outside the candidates has true
   distance ≥ d̃_K − b. If that exceeds the k-th refined distance, the answer is proven exact.
   Otherwise (rare) the query's full approximate row is recomputed and every point with
   d̃ ≤ t̃_k + 2b (t̃_k: the k-th smallest approximate distance) is refined exactly, which always
   contains the true k nearest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

U32 = 2.0**-24


def error_bound_coeff(dim: int) -> float:
    """(γ_{D+3} + 4u) with a 1 % safety margin: multiplies (‖x_c‖ + R)² to bound float32 error."""
    n = dim + 3
    return 1.01 * (n * U32 / (1 - n * U32) + 4 * U32)


def exact_sqdist(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Σ (x − y)² in float64 along the last axis (broadcasting)."""
    d = np.asarray(x, np.float64) - np.asarray(y, np.float64)
    return np.einsum("...i,...i->...", d, d)


@dataclass
class SearchStats:
    """How often the certificate held; exposed for benchmarks and tests."""

    queries: int = 0
    fallbacks: int = 0
    fallback_candidates: list[int] = field(default_factory=list)


class ExactKNN:
    """Exact k-NN over a fixed float32 base; ``backend`` 'faiss' (CPU) or 'torch' (GPU or CPU).

    ``fit`` keeps a reference to ``base`` (a memmap is fine) and an in-memory centred copy for
    the float32 engine. ``search`` returns exact float64 squared distances cast to float32 and
    int64 indices, both sorted ascending with ties broken by index.
    """

    def __init__(self, backend: str = "auto", candidates: int = 16, device: str | None = None,
                 query_chunk: int = 4096, base_chunk: int = 65536):
        self.backend, self.candidates, self.device = backend, candidates, device
        self.query_chunk, self.base_chunk = query_chunk, base_chunk
        self.stats = SearchStats()

    # -- set-up -----------------------------------------------------------------------
    def fit(self, base: np.ndarray) -> ExactKNN:
        if base.dtype != np.float32 or base.ndim != 2:
            raise TypeError(f"base must be float32 N×D, got {base.dtype} {base.shape}")
        if len(base) == 0:
            raise ValueError("cannot search an empty base set")
        self.base_ = base
        self.mean_ = np.asarray(base.mean(axis=0, dtype=np.float64), np.float32)
        self.centred_ = np.empty(base.shape, np.float32)
        for lo in range(0, len(base), self.base_chunk):
            np.subtract(base[lo:lo + self.base_chunk], self.mean_, out=self.centred_[lo:lo + self.base_chunk])
        norms = np.sqrt(np.einsum("ij,ij->i", self.centred_, self.centred_, dtype=np.float64))
        self.radius_ = float(norms.max())
        self.coeff_ = error_bound_coeff(base.shape[1])
        self.backend_ = self._resolve_backend()
        if self.backend_ == "torch":
            import torch

            from .runtime import default_device

            self._dev = default_device(self.device)
            self._base_t = torch.from_numpy(self.centred_).to(self._dev)
            self._base_norm_t = (self._base_t.double() ** 2).sum(1).float()
        return self

    def _resolve_backend(self) -> str:
        if self.backend != "auto":
            if self.backend not in ("faiss", "torch"):
                raise ValueError(f"unknown search backend '{self.backend}' (auto, faiss, torch)")
            return self.backend
        import torch

        return "torch" if (torch.cuda.is_available() and self.device != "cpu") else "faiss"

    # -- float32 engines --------------------------------------------------------------
    def _approx_topk(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.backend_ == "faiss":
            import faiss

            d, i = faiss.knn(q, self.centred_, k)
            return d, i.astype(np.int64)
        import torch

        qt = torch.from_numpy(q).to(self._dev)
        qn = (qt.double() ** 2).sum(1, keepdim=True).float()
        best_d = best_i = None
        prev = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False  # TF32 would void the error bound
        try:
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
        finally:
            torch.backends.cuda.matmul.allow_tf32 = prev
        return best_d.cpu().numpy(), best_i.cpu().numpy().astype(np.int64)

    def _approx_rows(self, q: np.ndarray) -> np.ndarray:
        """Full float32 approximate distance rows (fallback path), same arithmetic as the engines."""
        qn = np.einsum("ij,ij->i", q, q)[:, None]
        out = np.empty((len(q), len(self.centred_)), np.float32)
        for lo in range(0, len(self.centred_), self.base_chunk):
            yb = self.centred_[lo:lo + self.base_chunk]
            out[:, lo:lo + len(yb)] = qn + np.einsum("ij,ij->i", yb, yb)[None] - 2.0 * (q @ yb.T)
        return np.maximum(out, 0, out=out)

    # -- exact search -----------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Exact k nearest base points of each query: (sqdist float32 nq×k, index int64 nq×k)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.base_.shape[1]:
            raise ValueError(f"queries must be N×{self.base_.shape[1]}, got {queries.shape}")
        n_base = len(self.base_)
        k = min(k, n_base)
        kc = min(max(self.candidates, 2 * k), n_base)
        out_d = np.empty((len(queries), k), np.float32)
        out_i = np.empty((len(queries), k), np.int64)
        for lo in range(0, len(queries), self.query_chunk):
            x = queries[lo:lo + self.query_chunk]
            xc = x - self.mean_
            approx, cand = self._approx_topk(xc, kc)
            approx = approx.astype(np.float64)
            xn = np.sqrt(np.einsum("ij,ij->i", xc, xc, dtype=np.float64))
            bound = self.coeff_ * (xn + self.radius_) ** 2
            # every true top-k point has d̃ ≤ t̃_k + 2b; points outside the candidates have d̃ ≥ d̃_K
            limit = approx[:, k - 1] + 2 * bound
            ok = (kc >= n_base) | (approx[:, -1] > limit)
            exact = self._refine(x, cand, approx <= limit[:, None])
            order = _sort_rows(exact, cand)[:, :k]
            best_d = np.take_along_axis(exact, order, 1)
            best_i = np.take_along_axis(cand, order, 1)
            self.stats.queries += len(x)
            for j in np.flatnonzero(~ok):
                best_d[j], best_i[j] = self._fallback(x[j], xc[j], bound[j], k)
            out_d[lo:lo + len(x)] = best_d
            out_i[lo:lo + len(x)] = best_i
        return out_d, out_i

    def _refine(self, x: np.ndarray, cand: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Exact distances for the masked (query, candidate) pairs; +inf elsewhere."""
        exact = np.full(cand.shape, np.inf)
        qi, ci = np.nonzero(mask)
        step = max(1, 2**22 // x.shape[1])
        for lo in range(0, len(qi), step):
            q, c = qi[lo:lo + step], cand[qi[lo:lo + step], ci[lo:lo + step]]
            exact[q, ci[lo:lo + step]] = exact_sqdist(x[q], gather_rows(self.base_, c))
        return exact

    def _fallback(self, x: np.ndarray, xc: np.ndarray, bound: float, k: int) -> tuple[np.ndarray, np.ndarray]:
        self.stats.fallbacks += 1
        row = self._approx_rows(xc[None])[0].astype(np.float64)
        tk = np.partition(row, k - 1)[k - 1]
        cand = np.flatnonzero(row <= tk + 2 * bound)
        self.stats.fallback_candidates.append(len(cand))
        exact = exact_sqdist(x[None], self.base_[cand])
        order = np.lexsort((cand, exact))[:k]
        return exact[order], cand[order]


def gather_rows(base: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``base[idx]`` reading each needed row once, in order (kind to memory-mapped files)."""
    uniq, inv = np.unique(idx, return_inverse=True)
    return np.asarray(base[uniq])[inv.reshape(-1)] if len(idx) else np.empty((0, base.shape[1]), base.dtype)


def _sort_rows(exact: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """Per-row argsort by (exact distance, index)."""
    order = np.argsort(cand, axis=1, kind="stable")
    by_d = np.argsort(np.take_along_axis(exact, order, 1), axis=1, kind="stable")
    return np.take_along_axis(order, by_d, 1)
