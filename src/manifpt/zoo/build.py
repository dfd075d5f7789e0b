"""``build_zoo``: train every model of a config, sample it to PNG, describe and score the result.

Output layout (``GEN`` = ``out_dir``), readable by ``manifpt.GeneratedSet.from_folder``::

    GEN/<model>/00000.png ...        samples (lossless PNG), one folder per model
    GEN/models.yaml                  design factors of every finished model
    GEN/timings.json                 wall and CPU seconds per model (train, sample), build total
    GEN/quality.json                 Fréchet distance of each model to the real set (+ a real floor)
    GEN/_train/<model>/              checkpoint.safetensors, state.json, done.json (no images)
    GEN_grids/<model>.png            8×8 sample grids for people (outside GEN: the data layer reads
                                     every image under GEN/<model>/, so grids must not live there)

Resumable at every level: training continues from the last checkpoint (every ``ckpt_every`` steps,
RNG state included, so the result equals an uninterrupted run), sampling skips batches whose PNGs
exist (each batch has its own seed), and a finished model (``done.json``) is skipped. A model whose
recipe or training data changed since its checkpoint is refused rather than silently mixed.

Seeds: a model's seed derives from the config seed and its *base* name, so the ``train_data``
copies of a model start from the same weights and draw the same noise; only their data differs.
On CPU, models train in parallel worker processes (``workers``, default one per core) with a fixed
number of torch threads each, so results do not depend on how many workers ran.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image

from ..cache import atomic_write_text, hash_json, write_json
from ..data import ArraySource, ImageSet, ImageSource, list_image_files
from ..datasets import REAL_SETS, load_real, write_image_folder
from ..progress import progress
from ..runtime import default_device, seed_everything
from .base import ZooModel, get_family
from .checkpoint import load_checkpoint, read_state, save_checkpoint
from .config import ModelSpec, ZooConfig, load_config
from .layers import count_params
from .pretrained import PRETRAINED_DIR, load_pretrained

#: rough single-thread CPU seconds per step at batch 64 on 28×28, only to schedule long jobs first.
_COST = {"gan": 0.16, "vae": 0.07, "flow": 0.14, "ddpm": 1.0, "pixelcnn": 0.9}


class ZooMismatchError(RuntimeError):
    """An output folder holds a model built from a different recipe or different training data."""


@dataclass
class ZooResult:
    out: Path
    grids: Path
    models: dict[str, dict[str, Any]]
    timings: dict[str, Any]
    quality: dict[str, Any] | None


# --------------------------------------------------------------------------- real data


def resolve_real(real: str | Path | np.ndarray | ImageSource, show_progress: bool = True) -> tuple[np.ndarray, str]:
    """The real training set as uint8 N×H×W(×3) and a name for the ``train_data`` factor.

    Accepts an array, an ``ImageSource``, a folder of images (named after its ``source.json`` when
    ``manifpt data`` wrote it, else after the folder) or a name from ``REAL_SETS``.
    """
    if isinstance(real, np.ndarray):
        return ArraySource(real).images, "real"
    if isinstance(real, ImageSource):
        return real.load(np.arange(len(real))), "real"
    p = Path(real)
    if p.is_dir():
        s = ImageSet.from_folder(p, show_progress=show_progress)
        name = p.name
        if (p / "source.json").is_file():
            name = str(yaml.safe_load((p / "source.json").read_text()).get("name", name))
        return s.load(np.arange(len(s))), name
    if str(real) in REAL_SETS:
        return load_real(str(real)), str(real)
    raise FileNotFoundError(f"{real}: neither a folder of images nor a real set name ({', '.join(REAL_SETS)})")


def train_set(spec: str, real: np.ndarray, seed: int) -> np.ndarray:
    """Resolve a training-set spec (see ``manifpt.zoo.config``) against the main real set."""
    if spec == "real":
        return real
    if spec.startswith("real:"):
        k, n = (int(v) for v in spec[5:].split("/"))
        perm = np.random.default_rng(seed).permutation(len(real))
        size = len(real) // n
        return real[np.sort(perm[k * size:(k + 1) * size])]
    return load_real(spec)


def to_nchw(images: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(images))
    return t[:, None] if t.ndim == 3 else t.permute(0, 3, 1, 2).contiguous()


# --------------------------------------------------------------------------- one model


def model_seed(seed: int, name: str) -> int:
    return int(hash_json([seed, name.split("__", 1)[0]], n=4), 16) & 0x7FFFFFFF


def build_model(spec: ModelSpec, shape: tuple[int, int, int], device: torch.device, seed: int) -> ZooModel:
    """Instantiate a spec's family with its initial weights drawn from ``seed``."""
    fam = get_family(spec.family)
    seed_everything(seed)
    return fam(fam.Options(**spec.options), shape, device, spec.lr or fam.default_lr)


@dataclass
class Job:
    spec: ModelSpec
    out: Path
    grids: Path
    seed: int
    samples: int
    sample_batch: int
    ckpt_every: int
    grid: int
    device: str
    threads: int | None
    show_progress: bool
    pretrained: str | None = None  # a folder of shipped sampling networks (``pretrained.py``) to use


def _sample_seed(seed: int, batch: int) -> int:
    return int(hash_json([seed, "sample", batch], n=4), 16) & 0x7FFFFFFF


def _shape(data: np.ndarray) -> tuple[int, int, int]:
    return (1, *data.shape[1:3]) if data.ndim == 3 else (data.shape[3], *data.shape[1:3])


def job_key(job: Job, data: np.ndarray) -> str:
    """What determines a model's build: recipe, image shape, seed, training data (content), sample counts."""
    return hash_json({"spec": job.spec.model_dump(), "extra": job.spec.options, "shape": _shape(data),
                      "seed": job.seed, "data": ArraySource(data).fingerprint(), "samples": job.samples,
                      "sample_batch": job.sample_batch})


def run_job(job: Job, data: np.ndarray) -> dict[str, Any]:
    """Train (resuming), sample (resuming) and describe one model; returns its ``done.json``."""
    if job.threads:
        torch.set_num_threads(job.threads)
    spec, device = job.spec, torch.device(job.device)
    work = job.out / "_train" / spec.name
    shape, key = _shape(data), job_key(job, data)
    done = work / "done.json"
    if done.is_file():
        info = yaml.safe_load(done.read_text())
        if info.get("key") == key:
            return info
        raise ZooMismatchError(f"{work}: built from a different recipe or data; delete {work} and "
                               f"{job.out / spec.name} (or use another --out) to rebuild it")
    model = build_model(spec, shape, device, job.seed)
    gen = torch.Generator().manual_seed(job.seed)
    step, train_s, train_cpu = 0, 0.0, 0.0
    if (state := read_state(work)) is not None:
        if state.get("key") != key:
            raise ZooMismatchError(f"{work}: checkpoint was made with a different recipe or data; delete "
                                   f"{work} (or use another --out) to retrain it")
        load_checkpoint(work, model, gen)
        step, train_s, train_cpu = state["step"], state["train_s"], state["train_cpu_s"]
    shipped = state is None and job.pretrained is not None and load_pretrained(model, key, job.pretrained)
    if shipped:
        step = spec.steps  # this exact build ships: its sampling networks are loaded, nothing to train
    x = to_nchw(data).to(device)

    def batch() -> torch.Tensor:
        idx = torch.randint(len(x), (spec.batch_size,), generator=gen)
        return x[idx.to(device)].float().div_(255.0)

    model.train(True)
    t0, c0 = time.perf_counter(), time.process_time()
    bar = progress(total=spec.steps, desc=spec.name, disable=not job.show_progress, unit="step")
    bar.update(step)
    while step < spec.steps:
        model.current_step = step
        losses = model.train_step(batch, gen)
        step += 1
        model.after_step(step)
        bar.update(1)
        if step % 25 == 0:
            bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()})
        if step % job.ckpt_every == 0 or step == spec.steps:
            t1, c1 = time.perf_counter(), time.process_time()
            train_s, train_cpu = train_s + t1 - t0, train_cpu + c1 - c0
            t0, c0 = t1, c1
            save_checkpoint(work, model, gen, step, {"key": key, "name": spec.name, "train_s": train_s,
                                                     "train_cpu_s": train_cpu})
    bar.close()
    if spec.steps == 0 and not shipped:
        save_checkpoint(work, model, gen, 0, {"key": key, "name": spec.name, "train_s": 0.0, "train_cpu_s": 0.0})

    model.train(False)
    folder = job.out / spec.name
    t0, c0 = time.perf_counter(), time.process_time()
    n_batches = math.ceil(job.samples / job.sample_batch)
    for b in progress(range(n_batches), desc=f"{spec.name} sampling", disable=not job.show_progress):
        lo, hi = b * job.sample_batch, min(job.samples, (b + 1) * job.sample_batch)
        if all((folder / f"{i:05d}.png").exists() for i in range(lo, hi)):
            continue
        images = model.sample(hi - lo, torch.Generator().manual_seed(_sample_seed(job.seed, b)))
        write_image_folder(images, folder, start=lo)
    sample_s, sample_cpu = time.perf_counter() - t0, time.process_time() - c0
    write_grid(folder, job.grids / f"{spec.name}.png", job.grid)
    fam = get_family(spec.family)
    info = {
        "key": key, "name": spec.name, "family": fam.family, **model.factors(),
        "architecture": fam.architecture, "steps": spec.steps, "batch_size": spec.batch_size,
        "params": count_params(*model.sampling_networks()), "train_s": round(train_s, 2),
        "train_cpu_s": round(train_cpu, 2), "sample_s": round(sample_s, 2), "sample_cpu_s": round(sample_cpu, 2),
        "samples": job.samples, "device": str(device), "threads": torch.get_num_threads(),
        "pretrained": bool(shipped),
    }
    write_json(done, info)
    return info


def write_grid(folder: Path, path: Path, n: int) -> Path:
    """An √n×√n grid of the first ``n`` samples (2-pixel gray gutters, ×2 nearest for viewing)."""
    files = sorted(folder.glob("*.png"))[:n]
    ims = [np.asarray(Image.open(f)) for f in files]
    if not ims:
        return path
    side = math.ceil(math.sqrt(len(ims)))
    h, w = ims[0].shape[:2]
    canvas = np.full((side * (h + 2) + 2, side * (w + 2) + 2, *ims[0].shape[2:]), 128, np.uint8)
    for k, im in enumerate(ims):
        r, c = divmod(k, side)
        canvas[2 + r * (h + 2): 2 + r * (h + 2) + h, 2 + c * (w + 2): 2 + c * (w + 2) + w] = im
    img = Image.fromarray(canvas)
    img = img.resize((img.width * 2, img.height * 2), Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    img.save(tmp, format="PNG")
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- workers

_WORKER_REAL: np.ndarray | None = None


def _init_worker(real: np.ndarray) -> None:
    global _WORKER_REAL
    _WORKER_REAL = real
    os.environ.setdefault("MANIFPT_QUIET", "1")


def _worker_run(job: Job, set_spec: str, split_seed: int) -> dict[str, Any]:
    assert _WORKER_REAL is not None
    return run_job(job, train_set(set_spec, _WORKER_REAL, split_seed))


def _n_workers(cfg: ZooConfig, device: torch.device, n_jobs: int, workers: int | None) -> int:
    if device.type != "cpu":
        return 1
    w = workers if workers is not None else cfg.workers
    if w <= 0:
        w = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(w, n_jobs))


# --------------------------------------------------------------------------- the zoo


def build_zoo(config: ZooConfig | str | Path, real: str | Path | np.ndarray | ImageSource, out_dir: str | Path, *,
              device: str | torch.device | None = None, show_progress: bool = True,
              grids_dir: str | Path | None = None, only: Sequence[str] | None = None,
              workers: int | None = None, retrain: bool = False,
              pretrained: str | Path = PRETRAINED_DIR, real_name: str | None = None) -> ZooResult:
    """Train, sample and describe every model of ``config`` on ``real``; write everything to ``out_dir``.

    config: a ``ZooConfig``, a bundled config name (``default``, ``quick``, ``tiny``) or a YAML path.
    real: the main real training set (array, ``ImageSource``, folder, or a ``REAL_SETS`` name).
    grids_dir: where sample grids go (default: ``<out_dir>_grids`` beside ``out_dir``).
    only: build just these models (names after train-data expansion).
    workers: parallel CPU worker processes (default: the config's, 0 = one per core).
    real_name: the ``train_data`` factor of models trained on ``real`` (default: from ``real``).
    retrain: train every model even where ``pretrained`` ships the networks of this exact build
    (same recipe, data, seed and sizes: see ``manifpt.zoo.pretrained``).
    """
    cfg = config if isinstance(config, ZooConfig) else load_config(config)
    out = Path(out_dir)
    grids = Path(grids_dir) if grids_dir is not None else out.with_name(out.name + "_grids")
    dev = default_device(device)
    t_start = time.perf_counter()
    real_arr, resolved = resolve_real(real, show_progress)
    real_name = real_name or resolved
    if cfg.real_n is not None and cfg.real_n < len(real_arr):
        pick = np.random.default_rng(cfg.seed).choice(len(real_arr), cfg.real_n, replace=False)
        real_arr = real_arr[np.sort(pick)]
    specs = cfg.specs()
    if only:
        unknown = sorted(set(only) - {s.name for s in specs})
        if unknown:
            raise KeyError(f"not in the config: {', '.join(unknown)}")
        specs = [s for s in specs if s.name in set(only)]
    out.mkdir(parents=True, exist_ok=True)
    n_workers = _n_workers(cfg, dev, len(specs), workers)
    threads = cfg.threads_per_worker if dev.type == "cpu" else None
    jobs = {s.name: Job(s, out, grids, model_seed(cfg.seed, s.name), cfg.samples_per_model, cfg.sample_batch,
                        cfg.ckpt_every, cfg.grid, str(dev), threads, show_progress and n_workers == 1,
                        None if retrain else str(pretrained))
            for s in specs}
    order = sorted(specs, key=lambda s: -_COST.get(s.family, 0.2) * s.steps * s.batch_size / 64)
    if not retrain and all((Path(pretrained) / f"{job_key(jobs[s.name], train_set(s.train_set, real_arr, cfg.seed))}"
                            ".safetensors").is_file() for s in specs):
        n_workers = 1  # every model ships: sampling in this process beats starting workers
        for j in jobs.values():
            j.show_progress = show_progress
    infos: dict[str, dict[str, Any]] = {}
    bar = progress(total=len(specs), desc=f"zoo {cfg.name} ({n_workers} worker{'s' * (n_workers > 1)})",
                   disable=not show_progress, unit="model")

    def finished(info: dict[str, Any]) -> None:
        infos[info["name"]] = info
        bar.update(1)
        how = "shipped weights" if info.get("pretrained") else f"trained {info['train_s']:.0f}s"
        bar.write(f"  {info['name']}: {how}, sampled {info['sample_s']:.0f}s")
        _write_models_yaml(out, specs, infos, real_name)

    if n_workers == 1:
        prev = torch.get_num_threads()
        try:
            for s in order:
                finished(run_job(jobs[s.name], train_set(s.train_set, real_arr, cfg.seed)))
        finally:
            torch.set_num_threads(prev)
    else:
        ctx = get_context("spawn")
        with ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=_init_worker, initargs=(real_arr,)) as pool:
            futs = [pool.submit(_worker_run, jobs[s.name], s.train_set, cfg.seed) for s in order]
            for f in as_completed(futs):
                finished(f.result())
    bar.close()
    models = _write_models_yaml(out, specs, infos, real_name)
    timings = {
        "models": {n: {k: infos[n][k] for k in ("train_s", "train_cpu_s", "sample_s", "sample_cpu_s", "steps",
                                                 "batch_size", "threads", "device")} for n in models},
        "workers": n_workers, "device": str(dev), "build_wall_s": None,
        "sum_cpu_s": round(sum(i["train_cpu_s"] + i["sample_cpu_s"] for i in infos.values()), 1),
    }
    quality = None
    if cfg.quality.space:
        t_q = time.perf_counter()
        prev = torch.get_num_threads()
        if dev.type == "cpu":  # the workers are done: give the embedding network every core they had
            torch.set_num_threads(max(1, (threads or 1) * n_workers))
        try:
            quality = compute_quality(cfg, out, list(models), real_arr, show_progress)
        finally:
            torch.set_num_threads(prev)
        timings["quality_s"] = round(time.perf_counter() - t_q, 2)
    timings["build_wall_s"] = round(time.perf_counter() - t_start, 2)
    write_json(out / "timings.json", timings)
    return ZooResult(out, grids, models, timings, quality)


def _write_models_yaml(out: Path, specs: list[ModelSpec], infos: dict[str, dict[str, Any]],
                       real_name: str) -> dict[str, dict[str, Any]]:
    models = {}
    for s in specs:
        if s.name not in infos:
            continue
        i = infos[s.name]
        models[s.name] = {"family": i["family"], "upsampling": i["upsampling"], "loss": i["loss"],
                          "norm": i["norm"], "last_nl": i["last_nl"], "train_data": s.train_data or real_name,
                          "architecture": i["architecture"], "steps": i["steps"], "params": i["params"]}
    header = ("# Written by manifpt.zoo.build_zoo: one entry per model folder, its design factors.\n"
              "# Any factor can be an attribution target (manifpt.GeneratedSet.labels).\n")
    atomic_write_text(out / "models.yaml", header + yaml.safe_dump({"models": models}, sort_keys=False))
    return models


# --------------------------------------------------------------------------- quality


def _read_samples(folder: Path, n: int) -> np.ndarray:
    files = list_image_files(folder)[:n]
    return np.stack([np.asarray(Image.open(f)) for f in files])


def compute_quality(cfg: ZooConfig, out: Path, models: list[str], real: np.ndarray,
                    show_progress: bool = True) -> dict[str, Any]:
    """Fréchet distance of each model's first ``n_gen`` samples to ``n_real`` real images.

    FD in a fixed space (default: SL with the offline EfficientNet-Lite0 at 64×64), so the numbers
    rank the zoo's models against each other and against a real-vs-real floor; they are not
    comparable to published FIDs (Inception-v3, 50k samples). Linear algebra runs single-threaded:
    multi-threaded BLAS on a shared 2-core machine was measured 10–40× slower (spin-waiting).

    The floor ``real_vs_real`` is the distance between ``n_gen`` further real images and the same
    reference: a perfect generator would score about that. Per-model results are cached in
    ``_train/<model>/quality.json`` (keyed by the space settings and the real reference).
    """
    from threadpoolctl import threadpool_limits

    from ..metrics import frechet_distance, gaussian_stats
    from ..spaces import get_space

    q = cfg.quality
    space = get_space(q.space, **q.space_options)
    rng = np.random.default_rng(cfg.seed + 1)
    perm = rng.permutation(len(real))
    n_real = min(q.n_real, len(real) - min(q.n_gen, len(real) // 2))
    ref, held = real[np.sort(perm[:n_real])], real[np.sort(perm[n_real:n_real + q.n_gen])]
    key = hash_json({"space": q.space, "settings": space.settings(), "n_gen": q.n_gen,
                     "ref": ArraySource(ref).fingerprint()})
    stats_ref = gaussian_stats(space.embed(ref))
    with threadpool_limits(1):
        floor = round(frechet_distance(*stats_ref, *gaussian_stats(space.embed(held))), 4)
    result: dict[str, Any] = {"space": q.space, "space_settings": space.settings(), "n_real": len(ref),
                              "n_gen": q.n_gen, "real_vs_real": floor, "models": {}}
    for name in progress(models, desc="quality (Fréchet distance)", disable=not show_progress):
        cache = out / "_train" / name / "quality.json"
        if cache.is_file() and (c := yaml.safe_load(cache.read_text())).get("key") == key:
            result["models"][name] = c["fd"]
            continue
        feats = space.embed(_read_samples(out / name, q.n_gen))
        with threadpool_limits(1):
            fd = round(frechet_distance(*stats_ref, *gaussian_stats(feats)), 4)
        write_json(cache, {"key": key, "fd": fd})
        result["models"][name] = fd
    write_json(out / "quality.json", result)
    return result
