"""The floor of the pruned search's refinement: microseconds per refined base row, and what limits it.

Run: ``python benchmarks/refine_floor.py --out runs/bench/refine_floor.json``

The pruned engine (``manifpt.pruned``) refines the ~100–200 rows per query that its bound cannot
exclude; at d = 12,288 that step is half its search time. Here the same work is timed in isolation on
a random float32 base of ``--n`` × ``--dim`` (the values do not matter to the speed), ``--pairs``
random rows per query, ``--queries`` queries:

- ``direct_sqdist32`` as the search calls it (pairs sorted by query: each block broadcasts one query
  row) and with the pairs shuffled (every pair gathers its query row too);
- the gather floor: gather the rows and one BLAS GEMV per query (no subtraction; what any kernel that
  reads the rows must pay);
- compressed copies a tier could read instead (float16, int8: half and a quarter of the bytes),
  gathered and widened to float32 by numpy before the same differences.

Medians of ``--repeats`` interleaved repeats; peak RSS reported. Speed is a ratio to the gather floor
measured in the same process.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time
from pathlib import Path

import numpy as np

from manifpt.pruned import _pool, direct_sqdist32


def gemv_floor(base: np.ndarray, x: np.ndarray, qi: np.ndarray, idx: np.ndarray) -> np.ndarray:
    out = np.empty(len(qi), np.float32)
    starts = np.searchsorted(qi, np.arange(len(x) + 1))

    def job(q: int) -> None:
        out[starts[q]:starts[q + 1]] = base[idx[starts[q]:starts[q + 1]]] @ x[q]

    list(_pool().map(job, range(len(x))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--dim", type=int, default=12_288)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--pairs", type=int, default=115, help="refined rows per query (scale.py: 115 at 64 px, 50k)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("runs/bench/refine_floor.json"))
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    base = rng.random((a.n, a.dim), dtype=np.float32)
    x = rng.random((a.queries, a.dim), dtype=np.float32)
    qi = np.repeat(np.arange(a.queries), a.pairs)
    idx = np.concatenate([np.sort(rng.choice(a.n, a.pairs, replace=False)) for _ in range(a.queries)])
    shuffle = rng.permutation(len(qi))
    b16, b8 = base.astype(np.float16), (base * 127).astype(np.int8)
    runs = {
        "direct_sqdist32, sorted by query": lambda: direct_sqdist32(base, x, qi, idx),
        "direct_sqdist32, shuffled pairs": lambda: direct_sqdist32(base, x, qi[shuffle], idx[shuffle]),
        "gather + GEMV (floor)": lambda: gemv_floor(base, x, qi, idx),
        "float16 copy, widened by numpy": lambda: direct_sqdist32(b16, x, qi, idx),
        "int8 copy, widened by numpy": lambda: direct_sqdist32(b8, x, qi, idx),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(a.repeats):
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    floor = statistics.median(times["gather + GEMV (floor)"])
    rows = []
    print(f"{a.n} × {a.dim} float32 base, {a.queries} queries × {a.pairs} rows")
    print("| kernel | bytes per row | µs per row | × floor |\n|---|---|---|---|")
    for name, ts in times.items():
        s = statistics.median(ts)
        nbytes = a.dim * (2 if "float16" in name else 1 if "int8" in name else 4)
        rows.append({"kernel": name, "bytes_per_row": nbytes, "us_per_row": s / len(qi) * 1e6,
                     "vs_floor": s / floor})
        print(f"| {name} | {nbytes} | {s / len(qi) * 1e6:.2f} | {s / floor:.2f} |")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss:.0f} MB")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"n": a.n, "dim": a.dim, "queries": a.queries, "pairs": a.pairs,
                                 "repeats": a.repeats, "machine": platform.processor() or platform.machine(),
                                 "peak_rss_mb": rss, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
