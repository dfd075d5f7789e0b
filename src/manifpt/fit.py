"""`manifpt fit` and `manifpt predict`: artifacts → attributor per seed → metrics → report; attribution of new images.

A run directory holds ``run.json`` (everything needed to rebuild the manifold and read the
attributors), one attributor per seed (safetensors + JSON), ``results.json``, ``metrics.json``,
``predictions.csv``, figures and ``report.md`` / ``report.html``. Loading a run reads JSON and
safetensors only.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .attribute import Attributor
from .cache import atomic_write_text, cache_dir, hash_json, write_json
from .data import (
    BadImageError,
    GeneratedSet,
    ImageSet,
    decode_bytes,
    find_images,
    fit_channels,
    not_regular,
    resize_uint8,
)
from .errors import DataError
from .evaluate import ArrayMethod, SeedResult, artifact_structure_rows, evaluate, result_rows
from .manifold import Manifold
from .pipeline import check_labels, check_names, check_paths, check_seeds, check_target, open_sets
from .progress import notice
from .spaces import get_space
from .store import FORMAT as STORE_FORMAT
from .store import ArtifactStore, compute_artifacts, write_bad_files

RUN_FORMAT = "manifpt-run/1"


class FitConfig(BaseModel):
    """Everything `manifpt fit` needs; saved in run.json."""

    model_config = ConfigDict(extra="forbid")
    real: str
    generated: str
    space: str = "rgb"
    space_options: dict[str, Any] = Field(default_factory=dict)
    projection: str = "nn1"
    projection_options: dict[str, Any] = Field(default_factory=dict)
    target: str = "model"
    task: str | None = None  # defaults to "<target>-attribution"
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    size: int | None = None
    arch: str = "auto"
    epochs: int = 40
    batch_size: int = 64
    patience: int = 6
    depth: int = 3  # basic blocks per stage of the CIFAR ResNet (3 = the authors' ResNet-20; 1 is CPU-sized)
    lr: float | None = None
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    max_per_class: int | None = None
    backend: str = "auto"
    allow_overlap: bool = False
    tsne: bool = True
    device: str | None = None


class OverlapError(ValueError):
    pass


def artifact_store(real_set: ImageSet, gen: GeneratedSet, space: str, space_options: dict[str, Any] | None = None,
                   backend: str = "auto", size: int | None = None, show_progress: bool = True,
                   projection: str = "nn1",
                   projection_options: dict[str, Any] | None = None) -> tuple[ArtifactStore, Manifold]:
    """Artifacts of ``gen`` in ``space``, computed once and cached by the content hashes of both sets."""
    manifold = Manifold(get_space(space, **(space_options or {})), backend=backend, show_progress=show_progress,
                        projection=projection, projection_options=projection_options).fit(real_set)
    # the roots are part of the key: the store records file paths (figures, t-SNE and predict read them)
    key = hash_json({**manifold.settings(), "gen": gen.images.fingerprint(), "size": size,
                     "roots": [str(real_set.root.resolve()), str(gen.images.root.resolve())],
                     "format": STORE_FORMAT})
    root = cache_dir() / "artifacts" / key
    if (root / "manifest.json").exists():
        cached = ArtifactStore(root)
        problems = cached.problems()
        if not problems:
            return cached, manifold
        if cached.complete:
            notice(f"{root}: cached artifacts are damaged ({'; '.join(problems[:3])}); rebuilding them")
    return compute_artifacts(manifold, real_set, gen, root, show_progress=show_progress), manifold


def artifact_store_for(cfg: FitConfig, show_progress: bool = True,
                       sets: tuple[ImageSet, GeneratedSet] | None = None) -> tuple[ArtifactStore, Manifold]:
    real_set, gen = sets or open_sets(cfg.real, cfg.generated, cfg.size, show_progress)
    return artifact_store(real_set, gen, cfg.space, cfg.space_options, cfg.backend, cfg.size, show_progress,
                          cfg.projection, cfg.projection_options)


def check_fit_config(cfg: FitConfig, out: str | Path | None) -> FitConfig:
    """Every argument checked before any image is read; returns the config with absolute folder paths
    (run.json must work from any directory)."""
    check_names([cfg.space], [cfg.projection])
    check_paths(cfg.real, cfg.generated, out)
    check_target(cfg.generated, cfg.target)
    check_seeds(cfg.seeds)
    return cfg.model_copy(update={"real": str(Path(cfg.real).resolve()),
                                  "generated": str(Path(cfg.generated).resolve())})


def check_overlap(table: list[dict[str, str]], allow: bool) -> None:
    """Real images of the manifold must not be evaluated: their artifact is zero by construction.

    Identity is decided on pixels (the manifold's hash index), not on a zero distance: in SL/SSL space
    different images can share an embedding. Stores written before ``pixel_identical`` existed fall
    back to the distance.
    """
    zero = [r for r in table if (r["pixel_identical"] == "1" if "pixel_identical" in r
                                 else float(r["nn_sqdist"]) == 0.0)]
    if zero and not allow:
        ex = "; ".join(f"{r['path']} = real {r['nn_path']}" for r in zero[:5])
        raise OverlapError(f"{len(zero)} evaluated image(s) are pixel-identical to images of the real set that "
                           f"defines the manifold (e.g. {ex}); keep them disjoint or pass --allow-overlap")


def subsample(labels: np.ndarray, max_per_class: int | None, seed: int = 0) -> np.ndarray:
    if not max_per_class:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    keep = [np.sort(rng.permutation(np.flatnonzero(labels == c))[:max_per_class]) for c in sorted(set(labels))]
    return np.sort(np.concatenate(keep))


def attributor_factory(cfg: FitConfig, input_shape: tuple[int, ...] | None, show_progress: bool = True):
    def make(seed: int) -> Attributor:
        return Attributor(input_shape, arch=cfg.arch, epochs=cfg.epochs, batch_size=cfg.batch_size,
                          patience=cfg.patience, depth=cfg.depth, lr=cfg.lr, seed=seed, coords=cfg.space == "freq",
                          device=cfg.device, show_progress=show_progress)
    return make


def fit_run(cfg: FitConfig, out: str | Path, show_progress: bool = True) -> dict[str, Any]:
    """The whole `manifpt fit`: returns {"rows": results rows, "results": per-seed results, ...}."""
    from .report import write_fit_report

    cfg = check_fit_config(cfg, out)
    out = Path(out)
    sets = open_sets(cfg.real, cfg.generated, cfg.size, show_progress)
    labels_all = np.asarray(sets[1].labels(cfg.target))
    keep = subsample(labels_all, cfg.max_per_class)
    check_labels(labels_all[keep], cfg.target)
    out.mkdir(parents=True, exist_ok=True)
    bad = sets[0].bad + sets[1].images.bad
    write_bad_files(out / "bad_files.csv", bad)
    store, manifold = artifact_store_for(cfg, show_progress, sets)
    table = store.table()
    check_overlap(table, cfg.allow_overlap)
    table = [table[i] for i in keep]
    labels = labels_all[keep]
    X = store.artifacts(keep)
    man = store.manifest
    shape = tuple(man["artifact_shape"]) or None
    from .compare import manifpt_name

    method = ArrayMethod(manifpt_name(cfg.projection), cfg.space, X, shape,
                         attributor_factory(cfg, shape, show_progress))
    task = cfg.task or f"{cfg.target}-attribution"
    results = evaluate([method], labels, cfg.seeds, cfg.fractions, out=out / "models", keep_features=cfg.tsne,
                       show_progress=show_progress)
    factors = sorted({k for v in man["factors"].values() for k in v})
    rows = result_rows(results, task, cfg.target)
    rows += artifact_structure_rows(X, table, cfg.target, task, cfg.space, ["model", *factors],
                                    method=method.name)
    run_meta = {"format": RUN_FORMAT, "config": cfg.model_dump(), "task": task,
                "space_settings": manifold.space.settings(), "artifact_store": str(store.root),
                "image_shape": man["image_shape"], "artifact_shape": man["artifact_shape"],
                "classes": sorted(set(labels.tolist())), "n_items": len(labels),
                "real": {"root": cfg.real, "fingerprint": sets[0].fingerprint(), "n": len(sets[0])},
                "models": [f"models/{method.name}-{cfg.space}/seed-{s}" for s in cfg.seeds]}
    write_json(out / "run.json", run_meta)
    write_json(out / "results.json", rows)
    write_json(out / "metrics.json", [_seed_json(r) for r in results])
    _write_predictions(out / "predictions.csv", results, table, labels)
    write_fit_report(out, run_meta, rows, results, store, manifold, keep, labels)
    return {"rows": rows, "results": results, "run": run_meta, "bad": sorted(bad, key=lambda b: b.path)}


def _seed_json(r: SeedResult) -> dict[str, Any]:
    return {"method": r.method, "space": r.space, "seed": r.seed, **r.metrics, "fd_ratio_features": r.fdr_features}


def _write_predictions(path: Path, results: list[SeedResult], table: list[dict[str, str]], labels: np.ndarray) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["seed", "path", "true", "pred", "p_pred"])
    for r in results:
        for j, i in enumerate(r.test_idx):
            k = int(r.proba[j].argmax())
            w.writerow([r.seed, table[i]["path"], labels[i], r.classes[k], f"{r.proba[j, k]:.6f}"])
    atomic_write_text(path, buf.getvalue())


# --------------------------------------------------------------------------- predict


class Run:
    """A finished `manifpt fit` run, loaded from JSON + safetensors only."""

    def __init__(self, directory: str | Path, device: str | None = None, show_progress: bool = False):
        self.root = Path(directory)
        meta_path = self.root / "run.json"
        if not meta_path.exists():
            raise DataError(f"{self.root}: not a manifpt run (no run.json); give the --out folder of `manifpt fit`")
        try:
            self.meta = json.loads(meta_path.read_text())
        except ValueError as e:
            raise DataError(f"{meta_path}: not valid JSON ({e})") from None
        if self.meta.get("format") != RUN_FORMAT:
            raise DataError(f"{meta_path}: unknown format {self.meta.get('format')!r} (expected {RUN_FORMAT})")
        self.config = FitConfig(**self.meta["config"])
        self.models = [Attributor.load(self.root / m, device=device) for m in self.meta["models"]]
        self.show_progress = show_progress
        self._manifold: Manifold | None = None

    @property
    def channels(self) -> int:
        return 1 if len(self.meta["image_shape"]) == 2 else 3

    @property
    def manifold(self) -> Manifold:
        """The run's manifold, rebuilt from the real folder, which must be the one the run was fitted on."""
        if self._manifold is None:
            c = self.config
            real = ImageSet.from_folder(c.real, size=c.size, show_progress=self.show_progress)
            real = real.with_channels(self.channels)
            then = self.meta.get("real")
            if then is not None and then["fingerprint"] != real.fingerprint():
                raise DataError(f"{c.real}: the real set changed since this run was fitted ({then['n']} usable "
                                f"images then, {len(real)} now, or their content differs); predictions would use "
                                "another manifold. Restore the folder or refit the run")
            self._manifold = Manifold(get_space(c.space, **c.space_options), backend=c.backend,
                                      show_progress=self.show_progress, projection=c.projection,
                                      projection_options=c.projection_options).fit(real)
        return self._manifold

    def load_images(self, paths: list[Path]) -> tuple[np.ndarray, list[str], list[tuple[str, str]],
                                                       list[tuple[str, str]]]:
        """Decode files with the run's conversion.

        Returns (images, used paths, [(path, reason)] skipped, [(path, note)] converted with a warning).
        Non-regular files (a FIFO) are skipped without being opened.
        """
        shape = tuple(self.meta["image_shape"])
        channels = self.channels
        ok, used, bad, notes = [], [], [], []
        for p in paths:
            try:
                st = os.stat(p)
                problem = not_regular(st.st_mode)
                if problem:
                    raise BadImageError(p, problem)
                raw = decode_bytes(Path(p).read_bytes(), p)
                if raw.ndim != (2 if channels == 1 else 3):
                    notes.append((str(p), "grayscale image replicated to 3 channels (the run's real set is RGB)"
                                  if channels == 3 else "colour image converted to gray (the run's real set is gray)"))
                arr = fit_channels(raw, channels)
                if self.config.size:
                    arr = resize_uint8(arr, (self.config.size, self.config.size))
                if arr.shape != shape:
                    raise BadImageError(p, f"image is {arr.shape[1]}x{arr.shape[0]}, the run expects "
                                           f"{shape[1]}x{shape[0]} (fit with --size to resize)")
                ok.append(arr)
                used.append(str(p))
            except BadImageError as e:
                bad.append((str(p), e.reason))
            except OSError as e:
                bad.append((str(p), f"cannot read ({e.strerror or e})"))
        return (np.stack(ok) if ok else np.zeros((0, *shape), np.uint8)), used, bad, notes

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
        """Mean class probabilities over the seeds' attributors, plus nearest real index and distance."""
        _, proj, art = self.manifold.transform(images)
        probs = np.mean([m.predict_proba(art) for m in self.models], axis=0)
        return probs, self.models[0].classes_.tolist(), proj.index, proj.sqdist


def predict_files(run_dir: str | Path, inputs: list[str | Path], device: str | None = None) -> dict[str, Any]:
    """Attribute image files (or folders of them) with a run: one record per image; every file that
    is not used is in ``skipped`` with the reason, every conversion in ``warnings``."""
    paths: list[Path] = []
    skipped: list[tuple[str, str]] = []
    for p in map(Path, inputs):
        if p.is_dir():
            files, bad = find_images(p)
            paths.extend(files)
            skipped += [(b.path, b.reason) for b in bad]
        elif not p.exists() and not p.is_symlink():
            skipped.append((str(p), "no such file"))
        else:
            paths.append(p)
    run = Run(run_dir, device=device)
    images, used, bad, notes = run.load_images(paths)
    records = []
    if len(images):
        probs, classes, nn, d2 = run.predict(images)
        for j, path in enumerate(used):
            k = int(probs[j].argmax())
            records.append({"path": path, "predicted": classes[k], "probability": float(probs[j, k]),
                            "probabilities": {c: float(v) for c, v in zip(classes, probs[j], strict=True)},
                            "nearest_real": run.manifold.real_path(int(nn[j])), "nn_sqdist": float(d2[j])})
    return {"run": str(run_dir), "target": run.config.target, "space": run.config.space,
            "predictions": records, "skipped": [{"path": p, "reason": r} for p, r in skipped + bad],
            "warnings": [{"path": p, "reason": r} for p, r in notes]}
