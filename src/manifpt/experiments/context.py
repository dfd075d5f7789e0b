"""Shared state of an experiment run: prepared real sets and zoos, and the compare defaults.

Data (real image folders, zoos, manifold subsets) lives under ``data_root`` and is built once,
resumably, then reused by every experiment and every later run; results go under ``out``.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..attribute import AttributorConfig
from ..compare import CompareConfig, compare_run
from ..data import GeneratedSet, ImageSet, list_image_files
from ..pipeline import open_sets
from .config import DatasetConfig, ExperimentConfig


@dataclass
class Prepared:
    name: str
    real: Path  # the zoo's training set (folder)
    manifold: Path  # the real images that form the manifold
    gen: Path
    models: dict[str, dict[str, str]]

    @property
    def main_models(self) -> list[str]:
        """Models of the main design (not the train-data copies ``<model>__<set>``)."""
        return sorted(m for m in self.models if "__" not in m)

    def copies(self) -> dict[str, list[str]]:
        """Base model → its train-data copies."""
        out: dict[str, list[str]] = {}
        for m in sorted(self.models):
            if "__" in m:
                out.setdefault(m.split("__", 1)[0], []).append(m)
        return out


def subset_folder(src: Path, dst: Path, n: int | None, seed: int = 0) -> Path:
    """``dst`` holding a seeded subset of ``n`` images of ``src`` (hard links where possible)."""
    if n is None:
        return src
    marker = dst / ".complete"
    if marker.exists():
        return dst
    files = list_image_files(src)
    if n > len(files):
        raise ValueError(f"{src} has {len(files)} images, fewer than the {n} asked for")
    pick = sorted(np.random.default_rng(seed).permutation(len(files))[:n].tolist())
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for i in pick:
        target = dst / files[i].relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(files[i], target)
        except OSError:
            shutil.copy2(files[i], target)
    marker.write_text(f"{n} of {src}\n")
    return dst


@dataclass
class Context:
    cfg: ExperimentConfig
    data_root: Path
    out: Path
    show_progress: bool = True
    device: str | None = None
    retrain: bool = False  # train zoo models even where their exact build ships (``manifpt.zoo.pretrained``)
    _prepared: dict[str, Prepared] = field(default_factory=dict)
    _sets: dict[tuple[Path, Path], tuple[ImageSet, GeneratedSet]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def sets(self, real: Path, gen: Path) -> tuple[ImageSet, GeneratedSet]:
        """``open_sets(real, gen)``, decoded and hashed once per run: the prepared folders do not change
        during a run, and every study opens the same ones."""
        key = (Path(real).resolve(), Path(gen).resolve())
        if key not in self._sets:
            self._sets[key] = open_sets(real, gen, None, self.show_progress)
        return self._sets[key]

    def dataset(self, name: str) -> Prepared:
        """Real folder + zoo for dataset ``name`` (built on first use, resumable)."""
        if name in self._prepared:
            return self._prepared[name]
        from ..datasets import load_real, prepare_real
        from ..zoo import build_zoo, load_config

        ds: DatasetConfig = self.cfg.datasets[name]
        root = self.data_root / name
        t0 = time.perf_counter()
        images = load_real(ds.real, ds.n)
        real = prepare_real(ds.real, root / "real", ds.n, images=images)
        gen = root / f"zoo-{ds.zoo}"  # one folder per zoo config: presets on other zoos never collide
        zoo = load_config(ds.zoo)
        if not ds.zoo_quality:
            zoo = zoo.model_copy(update={"quality": zoo.quality.model_copy(update={"space": None})})
        # the images as loaded (what the folder holds, pixel for pixel, in its order): decoding the
        # folder again would cost more than the whole zoo when its networks ship
        build_zoo(zoo, images, gen, device=self.device, show_progress=self.show_progress,
                  retrain=self.retrain, real_name=ds.real)
        manifold = subset_folder(real, root / f"manifold-{ds.manifold_n}", ds.manifold_n)
        self.timings[f"prepare:{name}"] = time.perf_counter() - t0
        models = self.sets(manifold, gen)[1].factors
        self._prepared[name] = Prepared(name, Path(real), manifold, gen, models)
        return self._prepared[name]

    def attributor(self) -> AttributorConfig:
        """The preset's attributor settings, on this run's device when one was given."""
        a = self.cfg.attributor
        return a if self.device is None else a.model_copy(update={"device": self.device})

    def baselines(self) -> list[str]:
        from ..baselines import list_baselines

        b = self.cfg.baselines
        return list_baselines() if b == "all" else [] if b in ("none", []) else list(b)

    def compare(self, prepared: Prepared, *, manifold: Path | None = None, out: Path | None = None,
                **overrides: Any):
        """``compare_run`` with the preset's defaults (spaces, seeds, sizes, attributor, options)."""
        kw: dict[str, Any] = dict(
            real=str(manifold or prepared.manifold), generated=str(prepared.gen), spaces=self.cfg.spaces,
            methods=self.baselines(), seeds=self.cfg.seeds, max_per_class=self.cfg.max_per_class,
            space_options=self.cfg.space_options, baseline_options=self.cfg.baseline_options,
            projection_options=self.cfg.projection_options, attributor=self.attributor(),
            audit=out is not None)  # the audit is a report's section: studies that write none need not read headers
        kw.update(overrides)
        cfg = CompareConfig(**kw)
        return compare_run(cfg, out, show_progress=self.show_progress, sets=self.sets(Path(cfg.real), prepared.gen))
