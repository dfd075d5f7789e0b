"""Sketch size sweep of the pruned engine: speed against FAISS for several (m, m₁), in one process.

The pruned engine's cost per query is the queries' sketches (D·m), the bound GEMM (N·(m₁ + 1)) and
the refinement of the points the bound cannot exclude (fewer as m grows). This measures which
(m, m₁) is fastest on photo crops (real set: crops of half the photographs; queries: crops of the
other half, "natural", and the same with a planted generator trace, "generated"), as ``scale.py``
does: FAISS ``IndexFlatL2`` in the same process, medians of interleaved repeats, wrong-NN counts.

    python benchmarks/sketch_sweep.py --size 64 --n 50000 --out runs/bench/sketch_sweep.json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--configs", default="192:192,256:256,384:384,512:512,512:128,512:256",
                    help="comma list of m:m1 (m1 = m: one level)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/sketch_sweep.json"))
    args = ap.parse_args()

    import faiss

    from manifpt.datasets import load_photos
    from manifpt.demo import planted_model
    from manifpt.pruned import SketchIndex
    from manifpt.search import exact_sqdist

    def flat(a: np.ndarray) -> np.ndarray:
        return a.reshape(len(a), -1).astype(np.float32) / np.float32(255)

    base = flat(load_photos(args.n, "a", args.size, seed=0))
    queries = {"natural": flat(load_photos(args.queries, "b", args.size, seed=1)),
               "generated": flat(planted_model(load_photos(args.queries, "b", args.size, seed=2), "nearest+checker"))}
    plain = faiss.IndexFlatL2(base.shape[1])
    plain.add(base)
    configs = [tuple(int(v) for v in c.split(":")) for c in args.configs.split(",")]
    index = {c: SketchIndex(m=c[0], m1=c[1]).fit(base) for c in configs}

    def pair(x: np.ndarray, qi: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return exact_sqdist(x[qi], np.asarray(base[idx]))

    out: dict = {"size": args.size, "n_real": args.n, "n_queries": args.queries, "queries": {}}
    rows = []
    for qname, q in queries.items():
        b64 = base.astype(np.float64)
        ref = np.array([int(np.argmin(((b64 - x) ** 2).sum(1))) for x in q.astype(np.float64)])
        times: dict = {"faiss": [], **{c: [] for c in configs}}
        wrong = dict.fromkeys(configs, 0)
        for _ in range(args.repeats):
            t = time.perf_counter()
            plain.search(q, 1)
            times["faiss"].append(time.perf_counter() - t)
            for c in configs:
                t = time.perf_counter()
                got = index[c].search(q, 1, pair)[1][:, 0]
                times[c].append(time.perf_counter() - t)
                wrong[c] = int((got != ref).sum())
        f = statistics.median(times["faiss"])
        res = {}
        for c in configs:
            st = index[c].stats
            res[f"{c[0]}:{c[1]}"] = {"x_faiss": f / statistics.median(times[c]), "wrong_nn": wrong[c],
                                     "refined_per_query": st.refined_pairs / max(st.queries, 1),
                                     "ms_per_query": {k: 1e3 * v / max(st.queries, 1) for k, v in st.seconds.items()}}
            st.seconds, st.queries, st.refined_pairs = dict.fromkeys(st.seconds, 0.0), 0, 0
            r = res[f"{c[0]}:{c[1]}"]
            rows.append(f"| {qname} | {c[0]} | {c[1]} | **{r['x_faiss']:.2f}** | {r['refined_per_query']:.0f} | "
                        f"{r['ms_per_query']['sketch']:.2f} / {r['ms_per_query']['bounds']:.2f} / "
                        f"{r['ms_per_query']['refine']:.2f} | {r['wrong_nn']} |")
        out["queries"][qname] = {"faiss_ms_per_query": 1e3 * f / len(q), "configs": res}
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"{args.size} px, N = {args.n}, {args.queries} queries of each kind; peak RSS {out['peak_rss_mb']:.0f} MB")
    print("| queries | m | m₁ | × FAISS | refined / query | ms/query: sketch / bounds / refine | wrong NN |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
