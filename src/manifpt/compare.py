"""`manifpt compare`: ManiFPT in every space and the prior methods, on the same splits and seeds.

One table in the style of the paper's Tab. 1 (accuracy ± std and FD ratio per method). Prior
methods see the images; ManiFPT sees artifacts; every method is trained on the training + validation
part of the same per-seed stratified split and tested on the same test part (ManiFPT early-stops on
the validation part, the baselines carve their own validation set from it).

``learners`` puts other learners on the same artifacts (``manifpt.learners``: trained on the
training part, early-stopped on the validation part, like the attributor), and ``fuse`` adds their
late fusion chosen on the validation part (``manifpt.fusion``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from .attribute.config import WithAttributor
from .cache import write_json
from .data import GeneratedSet, ImageSet, check_reencode
from .errors import UsageError, check_name
from .evaluate import SeedResult, artifact_structure_rows, evaluate, result_rows
from .fusion import FusedMethod
from .learners import LEARNERS, learner_factory, learner_method_name
from .perturb import parse_specs
from .pipeline import check_labels, check_run, image_groups, manifpt_method, open_sets, shortcut_audit
from .progress import STAGES
from .robustness import identity, prepare, test_items
from .spaces import list_spaces
from .splits import subsample
from .store import write_bad_files


class CompareConfig(WithAttributor):
    """Everything `manifpt compare` needs (``--config`` YAML: any of these fields). The attributor's
    settings are ``attributor``; its ``arch`` is meant for image-shaped artifacts (vector ones get
    ``auto``, an MLP)."""

    real: str
    generated: str
    target: str = "model"
    task: str | None = None
    models: list[str] | None = None  # restrict to these model folders
    spaces: list[str] = Field(default_factory=list_spaces)  # every registered space
    methods: list[str] = Field(default_factory=list)  # baseline names; [] = none
    space_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    projections: list[str] = Field(default_factory=lambda: ["nn1"])
    projection_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    baseline_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    size: int | None = None
    max_per_class: int | None = None
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    backend: str = "auto"
    perturb: list[str] = Field(default_factory=list)  # specs tested on the test split, e.g. "jpeg:90,75,50"
    augment: list[str] = Field(default_factory=list)  # specs trained with (every method becomes <name>+aug)
    group_by: str | None = None  # group-aware split (``pipeline.image_groups``)
    reencode: str | None = None  # every image re-encoded this way first, e.g. jpeg:90 (format-matched)
    audit: bool = True  # the shortcut audit (``manifpt.audit``) in the report
    #: the learners trained on every space × projection's artifacts (``manifpt.learners``): ``attributor``
    #: is ManiFPT as published; ``linear``, ``wang20``, ``marra19`` separate the input from the learner
    learners: list[str] = Field(default_factory=lambda: ["attributor"])
    fuse: bool = False  # add ``manifpt-fused``: late fusion of every one of those methods (``manifpt.fusion``)


@dataclass
class BaselineMethod:
    """A prior method (``manifpt.baselines``) on the images themselves."""

    name: str
    images: np.ndarray
    make: Callable[[int], Any]
    space: str = "image"
    model: Any = None
    X_fit: np.ndarray | None = None  # training images where they differ (augmented, ``robustness``)
    perturbed: dict[str, tuple[np.ndarray, Any]] = field(default_factory=dict)

    @property
    def X(self) -> np.ndarray:
        return self.images

    def fit(self, train: np.ndarray, val: np.ndarray, labels: np.ndarray, seed: int) -> None:
        idx = np.sort(np.concatenate([train, val]))
        self.model = self.make(seed).fit((self.images if self.X_fit is None else self.X_fit)[idx], labels[idx])

    def predict_proba(self, idx: np.ndarray) -> tuple[np.ndarray, list[str]]:
        return self.predict_inputs(self.images[idx])

    def predict_inputs(self, inputs: np.ndarray) -> tuple[np.ndarray, list[str]]:
        return self.model.predict_proba(inputs), [str(c) for c in self.model.classes_]

    def features(self, idx: np.ndarray) -> np.ndarray:
        return self.model.features(self.images[idx])

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        write_json(directory / "baseline.json", self.model.describe())


def compare_run(cfg: CompareConfig, out: str | Path | None = None, show_progress: bool = True,
                sets: tuple[ImageSet, GeneratedSet] | None = None) -> tuple[list[dict[str, Any]], list[SeedResult]]:
    """Run every space and baseline on the same splits; returns (results rows, per-seed results).

    ``sets``: ``cfg.real`` and ``cfg.generated`` already opened (``open_sets``), so that a caller running
    many comparisons on the same folders (the experiments) decodes and hashes them once.
    """
    from .baselines import get_baseline

    STAGES.reset()
    t_start = time.perf_counter()
    check_run(cfg.real, cfg.generated, out, cfg.target, cfg.seeds, cfg.spaces, cfg.projections, cfg.methods)
    for learner in cfg.learners:
        check_name("learner", learner, LEARNERS)
    if cfg.fuse and not (cfg.spaces and cfg.projections and cfg.learners):
        raise UsageError("fuse needs at least one space, projection and learner to fuse")
    perturbations, augmentations = parse_specs(cfg.perturb), parse_specs(cfg.augment)
    if sets is not None and sets[0].reencode != check_reencode(cfg.reencode):
        sets = None  # opened without the re-encoding this run asks for
    with STAGES("decode"):
        real_set, gen = sets if sets is not None else open_sets(cfg.real, cfg.generated, cfg.size, show_progress,
                                                                cfg.reencode)
    if cfg.models is not None:
        gen = gen.select_models(cfg.models)
    labels_all = np.asarray(gen.labels(cfg.target))
    keep = subsample(labels_all, cfg.max_per_class)
    labels = labels_all[keep]
    check_labels(labels, cfg.target)
    groups = None if cfg.group_by is None else np.asarray(image_groups(gen, cfg.group_by, cfg.target))[keep]
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        write_bad_files(Path(out) / "bad_files.csv", real_set.bad + gen.images.bad)
    with STAGES("audit"):
        audit = shortcut_audit(real_set, gen, cfg.target, Path(out) if out is not None else None) if cfg.audit else None
    task = cfg.task or f"{cfg.target}-attribution"
    images = None
    if cfg.methods or perturbations or augmentations:
        with STAGES("decode", len(keep)):
            images = gen.images.load(keep)
    tested = test_items(labels, cfg.seeds, cfg.fractions, groups) if perturbations else None
    wild = (images, tested, augmentations, perturbations, show_progress)  # ``robustness.prepare``'s arguments

    methods: list[Any] = []
    structure_rows: list[dict[str, Any]] = []
    for space in cfg.spaces:
        for proj in cfg.projections:
            with STAGES("artifacts (project, store)"):
                method, table, _, manifold = manifpt_method(
                    real_set, gen, keep, space, cfg.attributor, projection=proj,
                    space_options=cfg.space_options.get(space), projection_options=cfg.projection_options.get(proj),
                    backend=cfg.backend, size=cfg.size, per_space_arch=True, show_progress=show_progress)
            prepare(method, manifold.artifacts, *wild)  # perturbed / augmented inputs: once for every learner
            for learner in cfg.learners:
                make = learner_factory(learner, cfg.attributor, method.input_shape, manifold.space.positional,
                                       cfg.baseline_options.get(learner), show_progress)
                methods.append(method if learner == "attributor" else dataclasses.replace(
                    method, name=learner_method_name(method.name, learner), model=None, make=make,
                    perturbed=dict(method.perturbed)))
            structure_rows += artifact_structure_rows(method.X, table, cfg.target, task, space, [cfg.target],
                                                      method=method.name)
    if cfg.fuse:
        methods.append(FusedMethod(list(methods)))
    for name in cfg.methods:
        opts = cfg.baseline_options.get(name, {})
        base = BaselineMethod(name, images, lambda seed, n=name, o=opts: get_baseline(n, seed=seed, **o))
        methods.append(prepare(base, identity, *wild))
    out_path = Path(out) if out is not None else None
    results = evaluate(methods, labels, cfg.seeds, cfg.fractions, out=out_path / "models" if out_path else None,
                       show_progress=show_progress, groups=groups)
    rows = result_rows(results, task, cfg.target) + structure_rows
    if out_path is not None:
        write_json(out_path / "results.json", rows)
        write_json(out_path / "config.json", cfg.model_dump())
        # per-stage wall time (``progress.StageTimer``: a stage's own time, nested stages excluded)
        wall = round(time.perf_counter() - t_start, 3)
        write_json(out_path / "run.json", {"wall_s": wall, "stages": STAGES.summary(), "n_images": len(keep),
                                           "n_real": len(real_set)})
        from .report import write_compare_report

        write_compare_report(out_path, cfg.model_dump(), rows, results, sorted(set(labels.tolist())), audit)
    return rows, results
