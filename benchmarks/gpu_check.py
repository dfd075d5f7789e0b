"""A short prepared check for a machine with a CUDA GPU: the exact search's GPU paths against float64.

Run: ``python benchmarks/gpu_check.py --out runs/bench/gpu_check.json`` (a few minutes on an H100/H200).

On 64×64 photo crops (d = 12,288; ``--n`` real, 500 queries of the other photo group, plain and with
a planted trace) it times, in one process with interleaved repeats, FAISS ``IndexFlatL2`` on the CPU
(the reference), the certified torch brute force on the GPU (``ExactKNN("torch")``) and the pruned
engine with its bounds on the GPU (``ExactKNN("pruned")``, CUDA picked automatically), and counts wrong
nearest neighbours against float64 brute force computed on the GPU in float64 (then the 8 best of
each query recomputed with ``exact_sqdist`` on the host; ties → lowest index). Exits non-zero if any
engine is wrong.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from manifpt.datasets import load_photos
from manifpt.demo import planted_model
from manifpt.search import ExactKNN, exact_sqdist


def reference(q: np.ndarray, base: np.ndarray) -> np.ndarray:
    b = torch.from_numpy(base).cuda().double()
    bn = (b * b).sum(1)
    out = np.empty(len(q), np.int64)
    for lo in range(0, len(q), 100):
        x = torch.from_numpy(q[lo:lo + 100]).cuda().double()
        d = (x * x).sum(1, keepdim=True) + bn[None] - 2 * x @ b.T
        top = torch.topk(d, 8, dim=1, largest=False).indices.cpu().numpy()
        for j, cand in enumerate(top):
            ex = exact_sqdist(q[lo + j], base[cand])
            out[lo + j] = cand[ex == ex.min()].min()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("runs/bench/gpu_check.json"))
    a = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this check is for the GPU machine")
    import faiss

    flat = lambda im: (im.reshape(len(im), -1) / np.float32(255)).astype(np.float32)  # noqa: E731
    base = flat(load_photos(a.n, "a", 64, seed=0))
    queries = {"natural": flat(load_photos(500, "b", 64, seed=1)),
               "generated": flat(planted_model(load_photos(500, "b", 64, seed=2), "nearest+checker"))}
    plain = faiss.IndexFlatL2(base.shape[1])
    plain.add(base)
    engines = {"torch": ExactKNN("torch").fit(base), "pruned": ExactKNN("pruned").fit(base)}
    rows, wrong_any = [], False
    for qn, q in queries.items():
        ref = reference(q, base)
        times: dict[str, list[float]] = {"faiss_cpu": [], "torch": [], "pruned": []}
        wrong = {}
        for _ in range(a.repeats):
            for name in ("faiss_cpu", "torch", "pruned"):
                torch.cuda.synchronize()
                t = time.perf_counter()
                i = plain.search(q, 1)[1][:, 0] if name == "faiss_cpu" else engines[name].search(q, 1)[1][:, 0]
                torch.cuda.synchronize()
                times[name].append(time.perf_counter() - t)
                wrong[name] = int((i != ref).sum())
        med = {k: statistics.median(v) for k, v in times.items()}
        wrong_any |= any(v for k, v in wrong.items() if k != "faiss_cpu")
        rows.append({"queries": qn, "n_real": a.n, "dim": base.shape[1], "seconds": med, "wrong_nn": wrong,
                     "speed_vs_faiss_cpu": {k: med["faiss_cpu"] / v for k, v in med.items()},
                     "pruned_sketch_device": engines["pruned"].sketch_.device})
        print(json.dumps(rows[-1]))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                                 "rows": rows}, indent=2) + "\n")
    sys.exit(1 if wrong_any else 0)


if __name__ == "__main__":
    main()
