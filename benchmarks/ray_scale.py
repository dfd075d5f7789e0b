"""The Ray executor against the local one at equal work: embedding + exact search, and independent fits.

Run: ``python benchmarks/ray_scale.py --out runs/bench/ray_scale.json`` (needs ``manifpt[ray]``)

Work: ``--real`` and ``--gen`` 64×64 crops of the offline photographs written once as PNG folders
(decoded by the executor from the path, as on a cluster with shared storage); the manifold in
``--space`` (in-memory embeddings: the same work on every repeat); then ``--fits`` independent
attributor fits (CIFAR ResNet, 1 block, on RGB artifacts of 32×32 crops) run through
``executor.map``. Each configuration — local, Ray with 1 worker, Ray with 2 workers — runs in the
same process on one local Ray instance (``--cpus``); timings are medians of ``--repeats``
interleaved repeats, and every Ray result is checked equal to the local one. Peak memory: the
driver's RSS high-water mark and the summed RSS of the Ray processes at the end (``ps``).

On a 2-core machine this measures overhead, not speed-up: two workers share the two cores that one
local process already uses (torch and FAISS are multi-threaded), so the numbers say what Ray costs
per call; the speed-up comes from cores and memory on other nodes (docs/ray.md sizes a cluster).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import ray

from manifpt import Manifold, get_space
from manifpt.attribute import Attributor
from manifpt.data import ImageSet
from manifpt.datasets import photo_patches, write_image_folder
from manifpt.executor import LocalExecutor
from manifpt.ray_executor import RayExecutor


def _fit(shared: tuple[np.ndarray, np.ndarray], seed: int) -> np.ndarray:
    X, y = shared
    att = Attributor((3, 32, 32), arch="cifar_resnet", depth=1, epochs=3, seed=seed, show_progress=False)
    return att.fit(X[: len(X) * 3 // 4], y[: len(X) * 3 // 4]).predict_proba(X)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real", type=int, default=3000)
    ap.add_argument("--gen", type=int, default=1000)
    ap.add_argument("--space", default="rgb")
    ap.add_argument("--fits", type=int, default=4)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("runs/bench/ray_scale.json"))
    a = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ray_scale_"))
    write_image_folder(photo_patches(a.real, 64, seed=0), tmp / "real")
    write_image_folder(photo_patches(a.gen, 64, seed=1), tmp / "gen")
    real, gen = ImageSet.from_folder(tmp / "real"), ImageSet.from_folder(tmp / "gen")
    # fits: RGB artifacts of 32×32 crops, three planted classes
    small = photo_patches(1200, 32, seed=2)
    m32 = Manifold(get_space("rgb"), cache=False, show_progress=False).fit(small[:800])
    y = np.repeat(np.array(["a", "b", "c"]), 400 // 3 + 1)[:400]
    imgs = small[800:].copy()
    imgs[y == "b", ::4] //= 2
    imgs[y == "c", :, ::4] //= 2
    X = m32.artifacts(imgs).reshape(-1, 3, 32, 32)

    t0 = time.perf_counter()
    ray.init(num_cpus=a.cpus, include_dashboard=False, log_to_driver=False)
    ray_start_s = time.perf_counter() - t0
    executors = {"local": LocalExecutor(), "ray-1": RayExecutor(workers=1), "ray-2": RayExecutor(workers=2)}
    times: dict[str, dict[str, list[float]]] = {k: {"fit+embed real": [], "artifacts": [], "fits": []}
                                                for k in executors}
    reference: dict[str, np.ndarray] = {}
    for _ in range(a.repeats):
        for name, ex in executors.items():
            t = time.perf_counter()
            m = Manifold(get_space(a.space), cache=False, show_progress=False, executor=ex).fit(real)
            times[name]["fit+embed real"].append(time.perf_counter() - t)
            t = time.perf_counter()
            art = m.artifacts(gen)
            times[name]["artifacts"].append(time.perf_counter() - t)
            t = time.perf_counter()
            probs = np.stack(ex.map(_fit, list(range(a.fits)), shared=(X, y)))
            times[name]["fits"].append(time.perf_counter() - t)
            for key, value in (("artifacts", art), ("fits", probs)):
                if key not in reference:
                    reference[key] = value
                elif not np.array_equal(reference[key], value):
                    raise SystemExit(f"{name}: {key} differ from the local run")
            del m
    ps = subprocess.run(["ps", "-eo", "rss=,args="], capture_output=True, text=True, check=True).stdout
    workers_rss = 1024 * sum(int(line.split(None, 1)[0]) for line in ps.splitlines()
                             if "ray::" in line or "/ray/" in line)  # Linux: RSS in KiB
    rows = []
    for name in executors:
        med = {k: statistics.median(v) for k, v in times[name].items()}
        rows.append({"executor": name, **{f"{k} s": round(v, 3) for k, v in med.items()},
                     "images/s": round((a.real + a.gen) / (med["fit+embed real"] + med["artifacts"]), 1),
                     "fits/min": round(60 * a.fits / med["fits"], 2)})
    base = rows[0]
    for r in rows:
        r["time ÷ local"] = round((r["fit+embed real s"] + r["artifacts s"] + r["fits s"])
                                  / (base["fit+embed real s"] + base["artifacts s"] + base["fits s"]), 2)
    cols = list(rows[0])
    print(f"{a.real} real + {a.gen} generated 64×64 ({a.space}), {a.fits} fits; Ray start {ray_start_s:.1f} s; "
          f"medians of {a.repeats}; every Ray result equal to the local one")
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    print(f"peak RSS: driver {peak:.0f} MiB, Ray processes at the end {workers_rss / 2**20:.0f} MiB")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "rows": rows,
                                 "ray_start_s": ray_start_s, "peak_rss_driver_mib": peak,
                                 "ray_processes_rss_mib": workers_rss / 2**20, "ray": ray.__version__,
                                 "machine": platform.platform(), "cpus": os.cpu_count()}, indent=2))
    ray.shutdown()


if __name__ == "__main__":
    main()
