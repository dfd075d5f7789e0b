"""`manifpt predict --out`: images/s and peak memory when attributing 10,000 images, against the in-memory path.

Run: ``python benchmarks/predict_stream.py --out runs/bench/predict_stream.json``

Data: 32×32 RGB crops of the offline photographs (``manifpt.datasets.photo_patches``): ``--real``
of them form the manifold; three planted-trace "models" (``manifpt.demo.planted_model``) of 200
images each train a run (``manifpt fit``: RGB space, the quick preset's CIFAR-ResNet, 1 seed);
``--n`` further images of the same three models (PNG files) are attributed. Each measurement runs in
a fresh subprocess (its ru_maxrss is that run's peak RSS): the streaming path (``predict_to_file``,
CSV, batches of ``--batch-size``) and the reference, ``predict_files`` (every image and record in
memory), interleaved A-B-A-B, medians of ``--repeats``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

CHILD = r"""
import json, resource, sys, time
from manifpt.fit import predict_files, predict_to_file
mode, run, folder, out, batch = sys.argv[1:6]
t = time.perf_counter()
if mode == "stream":
    s = predict_to_file(run, [folder], out, batch_size=int(batch), show_progress=False)
    n = s["ok"]
else:
    n = len(predict_files(run, [folder])["predictions"])
dt = time.perf_counter() - t
print(json.dumps({"n": n, "seconds": dt, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write(folder: Path, images: np.ndarray, prefix: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        Image.fromarray(im).save(folder / f"{prefix}{i:06d}.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench/predict_stream.json"))
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--real", type=int, default=5000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    from manifpt.datasets import photo_patches
    from manifpt.demo import planted_model
    from manifpt.fit import FitConfig, fit_run

    kinds = ["nearest+checker", "bilinear+stripes", "native+grid"]
    per = -(-args.n // len(kinds))
    patches = photo_patches(args.real + len(kinds) * (200 + per), 32, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write(root / "real", patches[:args.real], "r")
        at = args.real
        for k in kinds:
            write(root / "gen" / k.replace("+", "_"), planted_model(patches[at:at + 200], k), "g")
            write(root / "query", planted_model(patches[at + 200:at + 200 + per], k), k.replace("+", "_"))
            at += 200 + per
        for extra in sorted((root / "query").glob("*.png"))[args.n:]:  # n images in all
            extra.unlink()
        queries = sorted((root / "query").glob("*.png"))
        cfg = FitConfig(real=str(root / "real"), generated=str(root / "gen"), seeds=[0], tsne=False, audit=False,
                        attributor={"arch": "cifar_resnet", "depth": 1, "epochs": 8, "batch_size": 64})
        fit_run(cfg, root / "run", show_progress=False)
        runs: dict[str, list[dict]] = {"stream": [], "memory": []}
        for _ in range(args.repeats):
            for mode in ("stream", "memory"):
                res = subprocess.run([sys.executable, "-c", CHILD, mode, str(root / "run"), str(root / "query"),
                                      str(root / "preds.csv"), str(args.batch_size)],
                                     capture_output=True, text=True, check=True)
                runs[mode].append(json.loads(res.stdout.strip().splitlines()[-1]))
        assert all(r["n"] == len(queries) for rs in runs.values() for r in rs)
    summary = {m: {"images_per_s": statistics.median(r["n"] / r["seconds"] for r in rs),
                   "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in rs)} for m, rs in runs.items()}
    summary["stream_vs_memory_speed"] = summary["stream"]["images_per_s"] / summary["memory"]["images_per_s"]
    out = {"n": len(queries), "real": args.real, "batch_size": args.batch_size, "repeats": args.repeats,
           "machine": platform.processor() or platform.machine(), "runs": runs, "summary": summary}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"{'path':<22}{'images/s':>10}{'peak RSS (MB)':>15}")
    for m in ("stream", "memory"):
        print(f"{m:<22}{summary[m]['images_per_s']:>10.1f}{summary[m]['peak_rss_mb']:>15.0f}")
    print(f"streaming / in-memory speed: {summary['stream_vs_memory_speed']:.2f}; {len(queries)} images; "
          f"wrote {args.out}")


if __name__ == "__main__":
    main()
