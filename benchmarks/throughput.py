"""Images per second of each stage at 64×64: decode (scan of a PNG folder), embed (RGB, FREQ, SL), search.

Run: ``python benchmarks/throughput.py --out runs/bench/throughput.json``

Data: ``--n`` 64×64 RGB crops of the offline photographs (``manifpt.datasets.load_photos``), written
once as PNGs to a temporary folder. Decode = ``ImageSet.from_folder`` (hash + full decode of every
file, thread pool). SL: the ImageNet CNN the space picks offline (EfficientNet-Lite0), at input
resolution 64 (the 64 px preset) and 224 (the paper's), for each batch size and memory format
(contiguous / channels-last), torch threads as set (2 on this VM). Search: the pruned engine (and plain
FAISS in the same process, as reference) over ``--n`` real embeddings in RGB, 200 queries of the other
photo group. Each timing is the median of ``--repeats`` interleaved repeats; peak RSS is reported.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from manifpt.data import ImageSet
from manifpt.datasets import load_photos, write_image_folder
from manifpt.spaces import cnn as cnn_mod
from manifpt.spaces import get_space


def median_time(fn, repeats: int) -> float:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--sl-n", type=int, default=256, help="images per SL timing")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("runs/bench/throughput.json"))
    a = ap.parse_args()
    rows: list[dict] = []
    imgs = load_photos(a.n, "a", 64, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        write_image_folder(imgs, Path(tmp) / "real")
        s = median_time(lambda: ImageSet.from_folder(Path(tmp) / "real", show_progress=False), a.repeats)
        rows.append({"stage": "decode (scan: hash + decode PNG)", "setting": "thread pool", "images_per_s": a.n / s})
    for name in ("rgb", "freq"):
        sp = get_space(name)
        s = median_time(lambda sp=sp: sp.embed(imgs), a.repeats)
        rows.append({"stage": f"embed {name}", "setting": "", "images_per_s": a.n / s})
    sub = imgs[:a.sl_n]
    for res in (64, 224):
        for bs in (32, 64, 128):
            for fmt in ("contiguous", "channels_last"):
                sp = get_space("sl", resolution=res, batch_size=bs)
                net = sp._load()
                net.model.to(memory_format=torch.channels_last if fmt == "channels_last" else torch.contiguous_format)
                prev = cnn_mod.CHANNELS_LAST
                cnn_mod.CHANNELS_LAST = fmt == "channels_last"
                try:
                    sp.embed(sub[:bs])  # warm-up
                    s = median_time(lambda sp=sp: sp.embed(sub), a.repeats)
                finally:
                    cnn_mod.CHANNELS_LAST = prev
                rows.append({"stage": f"embed sl (resolution {res})", "setting": f"batch {bs}, {fmt}",
                             "images_per_s": len(sub) / s})
    import faiss

    from manifpt.search import ExactKNN

    base = (imgs.reshape(len(imgs), -1) / np.float32(255)).astype(np.float32)
    q = (load_photos(200, "b", 64, seed=1).reshape(200, -1) / np.float32(255)).astype(np.float32)
    knn = ExactKNN("pruned").fit(base)
    plain = faiss.IndexFlatL2(base.shape[1])
    plain.add(base)
    times: dict[str, list[float]] = {"faiss": [], "pruned": []}
    for _ in range(a.repeats):
        for eng in ("faiss", "pruned", "faiss"):
            t = time.perf_counter()
            plain.search(q, 1) if eng == "faiss" else knn.search(q, 1)
            times[eng].append(time.perf_counter() - t)
    for eng, ts in times.items():
        rows.append({"stage": f"search rgb ({eng}, N = {a.n})", "setting": "k = 1",
                     "images_per_s": len(q) / statistics.median(ts)})
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor(),
            "n": a.n, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print("| stage | setting | images/s |\n|---|---|---|")
    for r in rows:
        print(f"| {r['stage']} | {r['setting']} | {r['images_per_s']:.1f} |")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {a.out} (peak RSS {meta['peak_rss_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
