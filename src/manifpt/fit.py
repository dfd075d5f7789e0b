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
from pydantic import Field

from .attribute import Attributor
from .attribute.config import WithAttributor
from .cache import atomic_write_text, write_json
from .data import (
    BadImageError,
    ImageSet,
    decode_bytes,
    find_images,
    fit_channels,
    not_regular,
    reencode_uint8,
    resize_uint8,
)
from .errors import DataError, UsageError
from .evaluate import SeedResult, artifact_structure_rows, evaluate, result_rows
from .manifold import Manifold
from .perturb import parse_specs
from .pipeline import check_labels, check_run, image_groups, manifpt_method, open_sets, shortcut_audit
from .robustness import prepare, test_items
from .spaces import get_space
from .splits import make_split, subsample
from .store import write_bad_files

RUN_FORMAT = "manifpt-run/1"


class FitConfig(WithAttributor):
    """Everything `manifpt fit` needs; saved in run.json. The attributor's settings are ``attributor``
    (``AttributorConfig``); older run.json files with them at the top level still load."""

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
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    max_per_class: int | None = None
    backend: str = "auto"
    allow_overlap: bool = False
    tsne: bool = True
    perturb: list[str] = Field(default_factory=list)  # also test on perturbed test splits (``manifpt.perturb``)
    augment: list[str] = Field(default_factory=list)  # train on augmented images (the method becomes manifpt+aug)
    group_by: str | None = None  # group-aware split (``pipeline.image_groups``)
    reencode: str | None = None  # every image re-encoded this way first (predict does the same)
    audit: bool = True  # the shortcut audit (``manifpt.audit``) in the report


def check_fit_config(cfg: FitConfig, out: str | Path | None) -> FitConfig:
    """Every argument checked before any image is read; returns the config with absolute folder paths
    (run.json must work from any directory)."""
    check_run(cfg.real, cfg.generated, out, cfg.target, cfg.seeds, [cfg.space], [cfg.projection])
    return cfg.model_copy(update={"real": str(Path(cfg.real).resolve()),
                                  "generated": str(Path(cfg.generated).resolve())})


def fit_run(cfg: FitConfig, out: str | Path, show_progress: bool = True) -> dict[str, Any]:
    """The whole `manifpt fit`: returns {"rows": results rows, "results": per-seed results, ...}."""
    from .report import write_fit_report

    cfg = check_fit_config(cfg, out)
    out = Path(out)
    perturbations, augmentations = parse_specs(cfg.perturb), parse_specs(cfg.augment)
    sets = open_sets(cfg.real, cfg.generated, cfg.size, show_progress, cfg.reencode)
    labels_all = np.asarray(sets[1].labels(cfg.target))
    keep = subsample(labels_all, cfg.max_per_class)
    check_labels(labels_all[keep], cfg.target)
    groups = None if cfg.group_by is None else np.asarray(image_groups(sets[1], cfg.group_by, cfg.target))[keep]
    out.mkdir(parents=True, exist_ok=True)
    bad = sets[0].bad + sets[1].images.bad
    write_bad_files(out / "bad_files.csv", bad)
    audit = shortcut_audit(*sets, cfg.target, out) if cfg.audit else None
    method, table, store, manifold = manifpt_method(
        *sets, keep, cfg.space, cfg.attributor, projection=cfg.projection, space_options=cfg.space_options,
        projection_options=cfg.projection_options, backend=cfg.backend, size=cfg.size,
        allow_overlap=cfg.allow_overlap, show_progress=show_progress)
    labels, X, man = labels_all[keep], method.X, store.manifest
    if perturbations or augmentations:
        prepare(method, manifold.artifacts, sets[1].images.load(keep),
                test_items(labels, cfg.seeds, cfg.fractions, groups) if perturbations else None,
                augmentations, perturbations, show_progress)
    task = cfg.task or f"{cfg.target}-attribution"
    results = evaluate([method], labels, cfg.seeds, cfg.fractions, out=out / "models", keep_features=cfg.tsne,
                       show_progress=show_progress, groups=groups)
    calibrate_rejection(out / "models" / f"{method.name}-{cfg.space}", X if method.X_fit is None else method.X_fit,
                        labels, cfg.seeds, cfg.fractions, groups)
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
    write_fit_report(out, run_meta, rows, results, store, manifold, keep, labels, audit)
    return {"rows": rows, "results": results, "run": run_meta, "bad": sorted(bad, key=lambda b: b.path)}


def calibrate_rejection(models: Path, X: np.ndarray, labels: np.ndarray, seeds: list[int],
                        fractions: tuple[float, float, float], groups: np.ndarray | None = None) -> None:
    """Save each seed's open-set scorer (``manifpt.openset``) next to its attributor: fitted on the
    seed's training split, thresholds accepting 95 % of its validation split. ``predict`` rejects with it."""
    from .openset import OpenSetScorer

    for seed in seeds:
        split = make_split(labels, fractions, seed, groups)
        att = Attributor.load(models / f"seed-{seed}")
        scorer = OpenSetScorer(att).fit(X[split["train"]], labels[split["train"]])
        scorer.calibrate(X[split["val"]])
        scorer.save(models / f"seed-{seed}")


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
        from .openset import OpenSetScorer

        self.scorers = [OpenSetScorer.load(self.root / m, a) for m, a in zip(self.meta["models"], self.models,
                                                                              strict=True)]
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
            real = ImageSet.from_folder(c.real, size=c.size, show_progress=self.show_progress, reencode=c.reencode)
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
                if self.config.reencode:
                    arr = reencode_uint8(arr, self.config.reencode)
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
        # one forward pass per seed: its logits give the probabilities here and, with its features,
        # every open-set score in ``open_set``
        self.last_artifacts_, self.last_outputs_ = art, [m.outputs(art) for m in self.models]
        probs = np.mean([m.softmax(logits) for m, (logits, _) in zip(self.models, self.last_outputs_, strict=True)],
                        axis=0)
        return probs, self.models[0].classes_.tolist(), proj.index, proj.sqdist

    def open_set(self, art: np.ndarray, score: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(class, unknown?, score ÷ threshold) per artifact by a majority of the seeds' scorers (the
        class and ratio: the first seed's / the mean); ``None`` when the run has no calibration."""
        if not self.scorers or any(s is None for s in self.scorers):
            return None
        outputs = getattr(self, "last_outputs_", None)
        if outputs is None or art is not self.last_artifacts_:
            outputs = [None] * len(self.scorers)
        out = [s.predict_open(art, score, o) for s, o in zip(self.scorers, outputs, strict=True)]
        unknown = np.mean([o[1] for o in out], axis=0) > 0.5
        return out[0][0], unknown, np.mean([o[2] for o in out], axis=0)

    def enroll(self, name: str, images: np.ndarray) -> int:
        """Add source ``name`` to every seed's scorer from these images (see ``OpenSetScorer.enroll``)."""
        if not self.scorers or any(s is None for s in self.scorers):
            raise DataError(f"{self.root}: this run has no open-set calibration (fitted by an older manifpt); refit it")
        names = [*self.scorers[0].classes_, *self.scorers[0].enrolled_]
        if name in names:
            raise UsageError(f"{self.root}: a source named '{name}' exists already ({', '.join(names)})")
        _, _, art = self.manifold.transform(images)
        for m, s in zip(self.meta["models"], self.scorers, strict=True):
            s.enroll(name, art)
            s.save(self.root / m)
        return len(images)


def _collect(inputs: list[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image files of the inputs (folders searched), and the inputs that are not usable files."""
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
    return paths, skipped


def _records(run: Run, images: np.ndarray, used: list[str], reject_score: str) -> list[dict[str, Any]]:
    """One prediction record per image (see ``predict_files``)."""
    if not len(images):
        return []
    probs, classes, nn, d2 = run.predict(images)
    open_set = run.open_set(run.last_artifacts_, reject_score)
    records = []
    for j, path in enumerate(used):
        k = int(probs[j].argmax())
        rec = {"path": path, "predicted": classes[k], "probability": float(probs[j, k]),
               "probabilities": {c: float(v) for c, v in zip(classes, probs[j], strict=True)},
               "nearest_real": run.manifold.real_path(int(nn[j])), "nn_sqdist": float(d2[j])}
        if open_set is not None:
            cls, unknown, ratio = open_set
            rec.update({"predicted": "unknown" if unknown[j] else str(cls[j]), "nearest_known": str(cls[j]),
                        "unknown_score": float(ratio[j]), "reject_score": reject_score})
        records.append(rec)
    return records


def predict_files(run_dir: str | Path, inputs: list[str | Path], device: str | None = None,
                  reject_score: str = "knn") -> dict[str, Any]:
    """Attribute image files (or folders of them) with a run: one record per image; every file that
    is not used is in ``skipped`` with the reason, every conversion in ``warnings``. Runs with an
    open-set calibration also say ``unknown`` where ``reject_score`` exceeds its threshold
    (``unknown_score`` = score ÷ threshold), with the nearest known (or enrolled) source.
    Everything is held in memory: for many images, ``predict_to_file`` streams instead."""
    paths, skipped = _collect(inputs)
    run = Run(run_dir, device=device)
    images, used, bad, notes = run.load_images(paths)
    records = _records(run, images, used, reject_score)
    return {"run": str(run_dir), "target": run.config.target, "space": run.config.space,
            "predictions": records, "skipped": [{"path": p, "reason": r} for p, r in skipped + bad],
            "warnings": [{"path": p, "reason": r} for p, r in notes]}


def predict_to_file(run_dir: str | Path, inputs: list[str | Path], out: str | Path, *, device: str | None = None,
                    reject_score: str = "knn", top_k: int = 3, batch_size: int = 256,
                    show_progress: bool = True) -> dict[str, Any]:
    """Stream predictions of many images to ``out`` (``.csv`` or ``.jsonl``), ``batch_size`` images
    at a time: memory is the run (its manifold) plus one batch, whatever the number of images.

    One line per input file: ``status`` ``ok`` with the top-``top_k`` classes and probabilities, the
    unknown flag and score, the nearest real image and its squared distance; or ``skipped`` with the
    reason (an unreadable file is reported, never fatal). Written with ``cache.atomic_open``: the file
    appears whole when the run ends. Returns {"n", "ok", "skipped", "seconds", "images_per_s"}."""
    import time

    from .cache import atomic_open
    from .progress import progress

    out = Path(out)
    kind = out.suffix.lower()
    if kind not in (".csv", ".jsonl"):
        raise UsageError(f"--out {out}: give a .csv or a .jsonl file")
    t0 = time.perf_counter()
    paths, skipped = _collect(inputs)
    run = Run(run_dir, device=device)
    run.manifold  # noqa: B018 - build it before the clock of the first batch
    k = max(1, min(top_k, len(run.models[0].classes_)))
    cols = ["path", "status", "reason", "predicted", "probability",
            *[f"{w}{i}" for i in range(1, k + 1) for w in ("top", "p")],
            "unknown", "unknown_score", "nearest_known", "nearest_real", "nn_sqdist"]
    n_ok = n_bad = 0
    with atomic_open(out, "w", newline="", encoding="utf-8") as fh, \
            progress(total=len(paths), desc="predict", disable=not show_progress) as bar:
        writer = csv.DictWriter(fh, cols, extrasaction="ignore", lineterminator="\n") if kind == ".csv" else None
        if writer is not None:
            writer.writeheader()

        def emit(rec: dict[str, Any]) -> None:
            if writer is not None:
                writer.writerow(rec)
            else:
                fh.write(json.dumps(rec) + "\n")

        for path, reason in skipped:
            emit({"path": path, "status": "skipped", "reason": reason})
            n_bad += 1
        for lo in range(0, len(paths), batch_size):
            batch = paths[lo:lo + batch_size]
            images, used, bad, notes = run.load_images(batch)
            for path, reason in bad:
                emit({"path": path, "status": "skipped", "reason": reason})
            note = dict(notes)
            for rec in _records(run, images, used, reject_score):
                top = sorted(rec["probabilities"].items(), key=lambda kv: -kv[1])[:k]
                flat = {f"{w}{i}": v for i, (c, p) in enumerate(top, 1) for w, v in (("top", c), ("p", f"{p:.6f}"))}
                row = {**rec, "status": "ok", "reason": note.get(rec["path"], ""), **flat,
                       "probability": f"{rec['probability']:.6f}", "nn_sqdist": f"{rec['nn_sqdist']:.6g}"}
                if "unknown_score" in rec:
                    row.update(unknown=int(rec["predicted"] == "unknown"), unknown_score=f"{rec['unknown_score']:.4f}")
                if writer is None:
                    row = {c: row[c] for c in cols if c in row} | {"probabilities": rec["probabilities"]}
                emit(row)
            n_ok += len(used)
            n_bad += len(bad)
            bar.update(len(batch))
    seconds = time.perf_counter() - t0
    return {"n": n_ok + n_bad, "ok": n_ok, "skipped": n_bad, "seconds": round(seconds, 3),
            "images_per_s": round(n_ok / seconds, 2) if seconds > 0 else None}
