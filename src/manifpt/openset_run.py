"""`manifpt openset`: the leave-sources-out protocol on two folders, and the tables it reports.

``run_openset`` scans the folders, computes (or reuses) the artifacts of every space, and runs
``openset.evaluate_openset`` per seed with the given held-out sources or protocol; ``summarise`` turns the
per-seed results into results.json rows (``method`` ``manifpt/<score>`` or ``<baseline>/msp``,
``metric`` ``auroc | oscr | tnr95``; ``closed_accuracy``; ``enrol_k<k>_new | _known``;
``discovery_nmi | _ari | _purity``) and report sections. The ``openset`` experiment study uses both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .attribute.config import AttributorConfig
from .cache import write_json
from .errors import UsageError
from .evaluate import seed_row
from .figures import roc_figure
from .metrics import mean_std
from .openset import DISCOVERY_SCORE, ROC_GRID, evaluate_openset, held_out_split, open_set_metrics, protocol_splits
from .report import Section, fmt_pm, write_report
from .splits import subsample


def summarise(res: dict[tuple[str, str], list[dict[str, Any]]], task: str, title: str,
              out: Path | None = None, figure: str = "roc.png") -> tuple[list[dict[str, Any]], list[Section]]:
    """Per-seed results by (method, space) → (rows, report sections; with ``out``, the ROC figure
    ``figure`` written there, the report's folder)."""
    rows: list[dict[str, Any]] = []
    body, enrol_body, disc_body = [], [], []
    for (method_name, space), per_seed in res.items():
        n = len(per_seed)
        rows.append(seed_row(task, "model", method_name, space, "closed_accuracy",
                             [r["closed_accuracy"] for r in per_seed]))
        for score in per_seed[0]["scores"]:
            cells = []
            for metric in ("auroc", "oscr", "tnr95"):
                vals = [r["scores"][score][metric] for r in per_seed]
                rows.append(seed_row(task, "model", f"{method_name}/{score}", space, metric, vals))
                cells.append(fmt_pm(*mean_std(vals), n, True))
            label = f"ManiFPT-{space.upper()}" if method_name == "manifpt" else method_name
            body.append([label, score, fmt_pm(*mean_std([r["closed_accuracy"] for r in per_seed]), n, True),
                         *cells])
        if method_name != "manifpt":
            continue
        for k in sorted({k for r in per_seed for k in r["enrolment"]}):
            new, known = ([r["enrolment"][k][part] for r in per_seed if k in r["enrolment"]]
                          for part in ("new", "known"))
            for part, vals in (("new", new), ("known", known)):
                rows.append(seed_row(task, "model", "manifpt", space, f"enrol_k{k}_{part}", vals))
            enrol_body.append([space.upper(), str(k), fmt_pm(*mean_std(new), len(new), True),
                               fmt_pm(*mean_std(known), len(known), True)])
        disc = [r["discovery"] for r in per_seed if "discovery" in r]
        for metric in ("nmi", "ari", "purity"):
            if disc:
                rows.append(seed_row(task, "model", "manifpt", space, f"discovery_{metric}",
                                     [d[metric] for d in disc]))
        if disc:
            disc_body.append([space.upper(), *(f"{np.mean([d[k] for d in disc]):.3f}"
                                               for k in ("nmi", "ari", "purity")),
                              f"{np.mean([d['clusters'] for d in disc]):.1f}",
                              f"{np.mean([d['sources'] for d in disc]):.1f}",
                              f"{np.mean([d['rejected'] for d in disc]):.0f}"])
    figures = []
    if out is not None:
        curves = {(f"ManiFPT-{sp.upper()}" if m == "manifpt" else m): {
            score: np.mean([r["scores"][score]["roc"] for r in per_seed], axis=0).tolist()
            for score in per_seed[0]["scores"]} for (m, sp), per_seed in res.items()}
        figures = [roc_figure(curves, ROC_GRID, Path(out) / figure).name]
    return rows, [
        Section(f"Open-set attribution on {title}", figures=figures, tables=[(
            ["method", "unknown-score", "closed-set acc (%)", "AUROC (%)", "OSCR (%)", "TNR@95 (%)"], body)],
            text="Scores are oriented so that higher means 'unseen source'. AUROC, OSCR (Dhamija et al. 2018) and "
                 "TNR@95 (unknown images rejected at the threshold that accepts 95 % of known ones) compare the "
                 "known sources' test split with every image of the held-out sources."),
        Section("Enrolment: a held-out source added from k of its images (nearest class mean)", tables=[
            (["space", "k", "accuracy on the new source (%)", "accuracy on known sources (%)"], enrol_body)]),
        Section(f"Discovery: k-means on the images that {DISCOVERY_SCORE} rejects",
                "" if disc_body else f"No seed rejected enough images with {DISCOVERY_SCORE} to cluster them.",
                tables=[(["space", "NMI", "ARI", "purity", "clusters found", "true sources", "rejected images"],
                         disc_body)] if disc_body else [])]


def baseline_openset(name: str, options: dict[str, Any], images: np.ndarray, y: np.ndarray, unknown: list[str],
                     seed: int, known: list[str] | None = None) -> dict[str, Any]:
    """A baseline trained on the known sources (its own validation carve-out), scored by its maximum
    softmax probability: the same split and metrics as ``evaluate_openset``. Only the softmax score,
    because it is the one every baseline has (the others need penultimate features or logits, which
    several baselines, e.g. the nearest-mean Marra19 or the feature + logistic-regression ones, do
    not define the same way)."""
    from .baselines import get_baseline

    sp = held_out_split(y, unknown, seed, known=known)
    fit_idx = np.sort(np.r_[sp["train"], sp["val"]])
    clf = get_baseline(name, seed=seed, **options).fit(images[fit_idx], y[fit_idx])
    pk, pu = clf.predict_proba(images[sp["test"]]), clf.predict_proba(images[sp["unknown"]])
    correct = clf.classes_[pk.argmax(1)] == y[sp["test"]]
    return {"closed_accuracy": float(correct.mean()),
            "scores": open_set_metrics(correct, {"msp": 1 - pk.max(1)}, {"msp": 1 - pu.max(1)})}


def describe(splits: dict[int, tuple[list[str], list[str]]]) -> str:
    """'seed 0: a, b; seed 1: c' — the held-out sources of each seed."""
    return "; ".join(f"seed {s}: {', '.join(u)}" for s, (_, u) in splits.items())


def run_openset(real: str | Path, generated: str | Path, out: str | Path, *, unknown: list[str] | None = None,
                protocol: str | None = None, spaces: list[str], seeds: list[int], attributor: AttributorConfig,
                max_per_class: int | None = None, size: int | None = None,
                show_progress: bool = True) -> list[dict[str, Any]]:
    """Hold the ``unknown`` sources out of training (every seed), or those of a ``protocol``
    (``openset.protocol_splits``); write results.json, per_seed.json and report.md/html under ``out``."""
    from .pipeline import check_names, check_paths, manifpt_method, open_sets

    if (unknown is None) == (protocol is None):
        raise UsageError("give either --unknown m1,m2,... or --protocol (random, unseen-<factor>)")
    check_paths(real, generated, out)
    check_names(spaces)
    real_set, gen = open_sets(real, generated, size, show_progress)
    if unknown is not None:
        missing = sorted(set(unknown) - set(gen.model_names))
        if missing or not unknown:
            raise UsageError(f"--unknown must name models of {generated} (not found: "
                             f"{', '.join(missing) or 'none given'}; models: {', '.join(gen.model_names)})")
        known = sorted(set(gen.model_names) - set(unknown))
        if len(known) < 2:
            raise UsageError("at least two known models must remain after holding out --unknown")
        splits = {s: (known, sorted(unknown)) for s in seeds}
    else:
        splits = protocol_splits(str(protocol), {m: gen.factors.get(m, {}) for m in gen.model_names}, seeds)
    y_all = np.asarray(gen.labels("model"))
    keep = subsample(y_all, max_per_class)
    res = {}
    for space in spaces:
        method, *_ = manifpt_method(real_set, gen, keep, space, attributor, per_space_arch=True, size=size,
                                    show_progress=show_progress)
        res[("manifpt", space)] = [evaluate_openset(method.X, y_all[keep], u, s, method.make, known=k)
                                   for s, (k, u) in splits.items()]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, sections = summarise(res, "openset", f"{Path(generated).name}: held out {describe(splits)}", out)
    write_json(out / "results.json", rows)
    write_json(out / "per_seed.json", {f"{m}:{s}": v for (m, s), v in res.items()})
    write_report(out, "manifpt openset", sections)
    return rows
