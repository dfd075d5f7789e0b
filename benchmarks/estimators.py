"""Extra cost per image of each estimator of x* relative to the paper's nearest neighbour (``nn1``).

Run: ``python benchmarks/estimators.py [--n-real 20000] [--n-query 2000] [--repeats 3] --out FILE.json``

Data: Fashion-MNIST (Debian ``dataset-fashion-mnist``; 28×28 gray) — ``n-real`` training images form
the manifold, ``n-query`` test images are projected. Every estimator runs on the same manifold
(``Manifold(space, projection=...)``) in one process; the timed step is ``Manifold.transform`` (embed
the queries, exact k-NN search, estimate x*, subtract), medians over interleaved repeats. One-time
costs are reported separately: ``fit_s`` (embedding + indexing the real set; for ``autoencoder`` also
its training, ``--ae-steps`` steps, cached afterwards). The table gives µs per query image and the
ratio to ``nn1``'s time in the same repeat.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from manifpt.datasets import load_fashion_mnist
from manifpt.manifold import Manifold
from manifpt.projection import list_projectors
from manifpt.spaces import get_space

ORDER = ("nn1", "knn-mean", "local-affine", "autoencoder", "raw")


def bench(space_name: str, real: np.ndarray, queries: np.ndarray, repeats: int, k: int, ae_steps: int) -> list[dict]:
    names = [n for n in ORDER if n in list_projectors()]
    options = {"knn-mean": {"k": k}, "local-affine": {"k": k}, "autoencoder": {"steps": ae_steps}}
    manifolds, fit_s = {}, {}
    for name in names:
        t = time.perf_counter()
        manifolds[name] = Manifold(get_space(space_name), cache=False, show_progress=False, projection=name,
                                   projection_options=options.get(name)).fit(real)
        fit_s[name] = time.perf_counter() - t
    for m in manifolds.values():  # warm-up: thread pools, page faults
        m.transform(queries[:64])
    times: dict[str, list[float]] = {n: [] for n in names}
    ratios: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(repeats):
        for name in names:
            t = time.perf_counter()
            manifolds[name].transform(queries)
            times[name].append(time.perf_counter() - t)
        for name in names:
            ratios[name].append(times[name][-1] / times["nn1"][-1])
    rows = []
    for name in names:
        med = statistics.median(times[name])
        rows.append({"space": space_name, "estimator": name, "options": options.get(name, {}),
                     "transform_s": med, "us_per_image": 1e6 * med / len(queries),
                     "extra_us_per_image": 1e6 * (med - statistics.median(times["nn1"])) / len(queries),
                     "ratio_vs_nn1_median": statistics.median(ratios[name]), "fit_s": fit_s[name],
                     "n_real": len(real), "n_query": len(queries), "repeats": repeats})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-real", type=int, default=20000)
    ap.add_argument("--n-query", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--ae-steps", type=int, default=2000)
    ap.add_argument("--spaces", default="rgb,freq")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/estimators.json"))
    args = ap.parse_args()
    real = load_fashion_mnist("train")[: args.n_real]
    queries = load_fashion_mnist("test")[: args.n_query]
    rows = []
    for s in args.spaces.split(","):
        rows += bench(s, real, queries, args.repeats, args.k, args.ae_steps)
    print(f"{'space':6} {'estimator':13} {'µs/image':>9} {'extra µs':>9} {'× nn1':>6} {'fit s':>7}")
    for r in rows:
        print(f"{r['space']:6} {r['estimator']:13} {r['us_per_image']:9.1f} {r['extra_us_per_image']:9.1f} "
              f"{r['ratio_vs_nn1_median']:6.2f} {r['fit_s']:7.1f}")
    meta = {"machine": platform.platform(), "processor": platform.processor(), "cpus": torch.get_num_threads(),
            "torch": torch.__version__, "numpy": np.__version__, "command": "python benchmarks/estimators.py "
            + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "results": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
