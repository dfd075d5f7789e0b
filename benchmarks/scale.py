"""Exact search at real resolutions: the pruned engine vs FAISS ``IndexFlatL2`` in the same process.

For each (crop size, N_real): real = N RGB crops of photographs of group a (``load_photos``), queries =
crops of the other photographs (group b, "natural") and the same crops with a planted generator trace
("generated": nearest re-upsampling + checkerboard, as ``manifpt.demo``). Engines: plain FAISS
``IndexFlatL2`` k=1 (float32, the reference timer), manifpt's certified FAISS search and the pruned
search. Times are medians of A-B-A interleaved repeats; wrong-NN counts are against float64 brute force
(a float64 GEMM, then exact re-computation of each query's 32 best with a certificate that the 33rd is
farther by more than the GEMM's rounding; uncertified queries get a full exact row). Each config runs
in its own subprocess so that its peak RSS (VmHWM, all engines together) is its own.

    python benchmarks/scale.py --out runs/bench/scale.json --plot docs/scale-growth.png   # the README's
    python benchmarks/scale.py --report runs/bench/scale.json            # its table again
    python benchmarks/scale.py --sizes 32 --n 10000 --repeats 3       # a quick look
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from manifpt.manifold import IN_MEMORY_FACTOR


def vm_hwm_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(ln.split()[1]) for ln in fh if ln.startswith("VmHWM")) / 1024


def reference_nn(q: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Float64 brute force nearest neighbour (ties → lowest index)."""
    from manifpt.search import exact_sqdist

    b64n = np.einsum("ij,ij->i", base, base, dtype=np.float64)
    out = np.empty(len(q), np.int64)
    for lo in range(0, len(q), 50):
        x = q[lo:lo + 50].astype(np.float64)
        d = np.einsum("ij,ij->i", x, x)[:, None] + b64n[None]
        for blo in range(0, len(base), 8192):
            d[:, blo:blo + 8192] -= 2.0 * (x @ base[blo:blo + 8192].astype(np.float64).T)
        err = 4 * (base.shape[1] + 3) * 2.0**-53 * (np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
                                                     + np.sqrt(b64n.max())) ** 2
        top = np.argpartition(d, 32, axis=1)[:, :33]
        for j in range(len(x)):
            cand = top[j][np.argsort(d[j, top[j]])]
            if d[j, cand[-1]] - d[j, cand[0]] > 2 * err[j, 0]:
                ex = exact_sqdist(x[j], base[cand[:-1]])
                best = cand[:-1][ex == ex.min()].min()
            else:  # uncertified: the whole exact row
                ex = exact_sqdist(x[j], base)
                best = int(np.flatnonzero(ex == ex.min())[0])
            out[lo + j] = best
    return out


def run_one(size: int, n: int, nq: int, repeats: int, zoo: Path | None = None) -> dict:
    import os
    import tempfile

    import faiss

    from manifpt.cache import DiskRows
    from manifpt.datasets import load_photos
    from manifpt.demo import planted_model
    from manifpt.search import ExactKNN

    def flat(a: np.ndarray) -> np.ndarray:
        return a.reshape(len(a), -1).astype(np.float32) / np.float32(255)

    base = flat(load_photos(n, "a", size, seed=0))
    queries = {"natural": flat(load_photos(nq, "b", size, seed=1)),
               "generated": flat(planted_model(load_photos(nq, "b", size, seed=2), "nearest+checker"))}
    if zoo is not None:  # samples of generative models trained on these photographs (the 64 px zoo)
        from manifpt.data import GeneratedSet

        gen = GeneratedSet.from_folder(zoo, show_progress=False).images
        if gen.shape == (size, size, 3):
            pick = np.sort(np.random.default_rng(3).choice(len(gen), min(nq, len(gen)), replace=False))
            queries["zoo"] = flat(gen.load(pick))
    rss_data = vm_hwm_mb()
    dim = base.shape[1]
    t = time.perf_counter()
    plain = faiss.IndexFlatL2(dim)
    plain.add(base)
    build = {"faiss_plain": time.perf_counter() - t}
    engines = {}
    for name in ("faiss", "pruned"):
        t = time.perf_counter()
        engines[name] = ExactKNN(name).fit(base)
        build[name] = time.perf_counter() - t
    # out of core: the base in a file read with pread (``Manifold`` with a memory budget); "cold" evicts
    # the file from the page cache before every search, so every refined row is read from the disk
    tmp = tempfile.TemporaryDirectory(dir=os.environ.get("MANIFPT_BENCH_TMP"))
    disk = DiskRows(Path(tmp.name) / "base.f32", base.shape, np.float32, "w+")
    for lo in range(0, n, 4096):
        disk[lo:lo + 4096] = base[lo:lo + 4096]
    disk.flush()
    budget = 4 * 2**30  # 4 GiB for the sketch, one batch of bounds, the PCA sample and refinement blocks
    t = time.perf_counter()
    engines["pruned_disk"] = ExactKNN("pruned", memory_budget=budget).fit(disk)
    build["pruned_disk"] = time.perf_counter() - t
    engines["pruned_disk_cold"] = engines["pruned_disk"]

    def evict() -> None:
        os.posix_fadvise(disk._fd, 0, 0, os.POSIX_FADV_DONTNEED)
    out = {"size": size, "dim": dim, "n_real": n, "n_queries": nq, "build_s": build,
           "sketch_dim": engines["pruned"].sketch_.m_, "sketch_mb": engines["pruned"].sketch_.nbytes / 2**20,
           "faiss_index_mb": base.nbytes / 2**20, "rss_after_data_mb": rss_data, "queries": {}}
    for qname, q in queries.items():
        ref = reference_nn(q, base)
        names = ("faiss_plain", "pruned", "faiss", "pruned_disk", "pruned_disk_cold")
        times: dict[str, list[float]] = {k: [] for k in names}
        answers = {}
        for _ in range(repeats):  # A-B-A: plain, pruned, certified, pruned from disk (warm, cold), plain, ...
            for name in names:
                if name == "pruned_disk_cold":
                    evict()
                t = time.perf_counter()
                if name == "faiss_plain":
                    answers[name] = plain.search(q, 1)[1][:, 0]
                else:
                    answers[name] = engines[name].search(q, 1)[1][:, 0]
                times[name].append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in times.items()}
        st = engines["pruned"].sketch_.stats
        nq_done = max(st.queries, 1)
        out["queries"][qname] = {
            "seconds": med, "ratio_to_faiss_plain": {k: med["faiss_plain"] / v for k, v in med.items()},
            "wrong_nn": {k: int((a != ref).sum()) for k, a in answers.items()},
            "pruned_refined_per_query": st.refined_pairs / nq_done,
            "pruned_exact_per_query": st.exact_pairs / nq_done,
            # where the pruned engine's time goes, ms per query (mean over the repeats)
            "pruned_ms_per_query": {k: 1e3 * v / nq_done for k, v in st.seconds.items()},
            "pruned_backend_after": engines["pruned"].backend_}
        st.refined_pairs = st.queries = st.exact_pairs = 0
        st.seconds = dict.fromkeys(st.seconds, 0.0)
    out["peak_rss_mb"] = vm_hwm_mb()
    disk.close()
    tmp.cleanup()
    return out


def table(rows: list[dict]) -> str:
    """The README's Markdown table from scale.json's rows."""
    head = ("| px | d | N real | queries | m | FAISS ms/query | pruned ms/query | pruned × FAISS | certified FAISS × "
            "| from disk ms/query (warm / cold) | refined / exact per query "
            "| pruned ms/query: sketch / bounds / refine / exact | wrong NN (pruned / disk / certified / plain) "
            "| build s (pruned / FAISS) | sketch MB | peak RSS MB |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        for qn, q in r["queries"].items():
            s, x, w, ms = q["seconds"], q["ratio_to_faiss_plain"], q["wrong_nn"], q["pruned_ms_per_query"]
            lines.append(
                f"| {r['size']} | {r['dim']} | {r['n_real']} | {r['n_queries']} {qn} | {r['sketch_dim']} "
                f"| {1e3 * s['faiss_plain'] / r['n_queries']:.2f} | {1e3 * s['pruned'] / r['n_queries']:.2f} "
                f"| **{x['pruned']:.2f}** | {x['faiss']:.2f} | {1e3 * s['pruned_disk'] / r['n_queries']:.2f} / "
                f"{1e3 * s['pruned_disk_cold'] / r['n_queries']:.2f} | {q['pruned_refined_per_query']:.0f} / "
                f"{q['pruned_exact_per_query']:.1f} | {ms['sketch']:.2f} / {ms['bounds']:.2f} / {ms['refine']:.2f} / "
                f"{ms['exact']:.2f} | {w['pruned']} / {max(w['pruned_disk'], w['pruned_disk_cold'])} / {w['faiss']} / "
                f"{w['faiss_plain']} "
                f"| {r['build_s']['pruned']:.1f} / {r['build_s']['faiss_plain']:.1f} | {r['sketch_mb']:.0f} "
                f"| {r['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """Cost growth: ms per query against N_real, one line per (engine, d), generated queries."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [k for k in ("natural", "generated", "zoo") if any(k in r["queries"] for r in rows)]
    fig, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 4), sharey=True)
    for ax, qn in zip(axes, kinds, strict=True):
        for c, dim in enumerate(sorted({r["dim"] for r in rows})):
            rs = sorted((r for r in rows if r["dim"] == dim and qn in r["queries"]), key=lambda r: r["n_real"])
            if not rs:
                continue
            n = [r["n_real"] for r in rs]
            for eng, style, label in (("faiss_plain", "--", "FAISS"), ("pruned", "-", "pruned"),
                                      ("pruned_disk_cold", ":", "pruned, base on disk (cold)")):
                ms = [1e3 * r["queries"][qn]["seconds"][eng] / r["n_queries"] for r in rs]
                ax.plot(n, ms, style, color=f"C{c}", marker="o", label=f"{label}, d = {dim}")
        ax.set(xscale="log", yscale="log", xlabel="N real", title=f"{qn} queries")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ms per query (k = 1, 2 cores)")
    axes[0].legend(fontsize=7)
    fig.suptitle("exact 1-NN search: FAISS IndexFlatL2 (dashed), pruned (solid), pruned with the base on disk, "
                 "cold page cache (dotted)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="32,64,128")
    ap.add_argument("--n", default="10000,50000,200000")
    ap.add_argument("--queries", type=int, default=200, help="per query kind")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-gb", type=float, default=16.0, help="skip configs whose base would exceed this")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/scale.json"))
    ap.add_argument("--zoo", type=Path, help="a generated folder (e.g. the 64 px zoo): its samples are a third "
                    "query kind at their image size")
    ap.add_argument("--one", nargs=2, type=int, metavar=("SIZE", "N"), help=argparse.SUPPRESS)
    ap.add_argument("--report", type=Path, metavar="JSON", help="print the Markdown table of an earlier run's JSON")
    ap.add_argument("--plot", type=Path, help="also write the cost-growth plot (PNG) here")
    a = ap.parse_args()
    if a.report:
        rows = json.loads(a.report.read_text())["rows"]
        print(table(rows))
        if a.plot:
            plot(rows, a.plot)
        return
    if a.one:
        print(json.dumps(run_one(a.one[0], a.one[1], a.queries, a.repeats, a.zoo)))
        return
    rows, skipped = [], []
    for size in map(int, a.sizes.split(",")):
        for n in map(int, a.n.split(",")):
            gb = n * size * size * 3 * 4 * IN_MEMORY_FACTOR / 2**30  # base + FAISS copy + slack
            if gb > a.max_gb:
                skipped.append({"size": size, "n_real": n, "why": f"needs ~{gb:.0f} GB > --max-gb {a.max_gb}"})
                continue
            cmd = [sys.executable, __file__, "--one", str(size), str(n), "--queries", str(a.queries),
                   "--repeats", str(a.repeats)] + (["--zoo", str(a.zoo)] if a.zoo else [])
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            for qn, qr in r["queries"].items():
                ratio = qr["ratio_to_faiss_plain"]
                print(f"{size:>4} px d={r['dim']:>6} N={n:>6} {qn:>9}: pruned {ratio['pruned']:5.2f}x FAISS, "
                      f"certified FAISS {ratio['faiss']:4.2f}x, wrong NN pruned/certified/plain "
                      f"{qr['wrong_nn']['pruned']}/{qr['wrong_nn']['faiss']}/{qr['wrong_nn']['faiss_plain']}, "
                      f"{qr['pruned_refined_per_query']:.0f} exact distances/query; build pruned "
                      f"{r['build_s']['pruned']:.1f} s vs FAISS {r['build_s']['faiss_plain']:.1f} s; "
                      f"peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"rows": rows, "skipped": skipped}, indent=2) + "\n")
    print(table(rows))
    if a.plot:
        plot(rows, a.plot)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
