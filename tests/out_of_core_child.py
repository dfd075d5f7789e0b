"""Child process of ``test_manifold.test_out_of_core_manifold_stays_within_its_memory_budget``.

Fits a ``Manifold`` on a synthetic real set generated batch by batch (no copy of it in memory), with a
memory budget, projects queries, and reports its peak RSS before and after (ru_maxrss)."""

from __future__ import annotations

import hashlib
import json
import resource
import sys
from pathlib import Path

import numpy as np

from manifpt.manifold import Manifold
from manifpt.spaces import get_space


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class SyntheticPhotos:
    """Image i: a seeded mix of 12 smooth colour patterns plus grain (low-rank, as photos are)."""

    shape = (32, 32, 3)

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed
        g = np.random.default_rng(99)
        yy, xx = np.mgrid[0:32, 0:32] / 32.0
        waves = [np.cos(np.pi * (a * yy + b * xx) + g.uniform(0, 6)) for a, b in g.integers(0, 4, (12, 2))]
        self.patterns = np.stack([w[..., None] * g.uniform(-1, 1, 3) for w in waves])  # 12×32×32×3

    def __len__(self) -> int:
        return self.n

    def load(self, indices) -> np.ndarray:
        out = np.empty((len(indices), *self.shape), np.uint8)
        for j, i in enumerate(np.asarray(indices)):
            r = np.random.default_rng([self.seed, int(i)])
            im = 128 + np.tensordot(r.normal(0, 25, 12), self.patterns, 1) + r.normal(0, 3, self.shape)
            out[j] = np.clip(np.rint(im), 0, 255)
        return out

    def fingerprint(self) -> str:
        return hashlib.sha256(f"synthetic-photos/{self.n}/{self.seed}".encode()).hexdigest()


def main() -> None:
    cache, n, budget, out = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    real, queries = SyntheticPhotos(n, 0), SyntheticPhotos(100, 1).load(np.arange(100))
    import faiss  # noqa: F401  (the libraries a run loads, before the baseline is taken)
    import torch  # noqa: F401

    before = rss_mb()
    m = Manifold(get_space("rgb"), cache=cache, memory_budget=budget, show_progress=False).fit(real)
    idx, dist = m.project(queries)
    after = rss_mb()
    np.save(out / "queries.npy", m.embed(queries))
    (out / "result.json").write_text(json.dumps({
        "rss_before_mb": before, "rss_after_mb": after, "index": idx.tolist(), "sqdist": dist.tolist(),
               "out_of_core": m.out_of_core_, "backend": m.index_.backend_, "emb": str(m.cache_path_),
               "refined": m.index_.stats.refined_pairs}))


if __name__ == "__main__":
    main()
