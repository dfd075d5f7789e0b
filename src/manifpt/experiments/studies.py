"""The paper's experiments and the two it left out, one registered function each.

Every study takes the shared ``Context`` and returns ``(rows, sections)``: results.json rows in the
attribution schema and report sections (tables, figures). ``task`` names carry the dataset, e.g.
``model-type:fmnist``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from ..evaluate import row, seed_row
from ..metrics import kmeans_nmi, mean_std
from ..pipeline import artifact_store, attributor_factory
from ..registry import Registry
from ..report import Section, fmt_pm, paired_table, paper_table
from ..splits import subsample
from .context import Context, Prepared, subset_folder
from .paper import PAPER_LAYER_NMI, PAPER_MODEL_TYPE, PAPER_TRAIN_DATA

Study = Callable[[Context, Path], tuple[list[dict[str, Any]], list[Section]]]
#: every study, by name (all defined in this module)
STUDIES: Registry[Study] = Registry("study", attr=None)
study = STUDIES.register


def _first(ctx: Context) -> Prepared:
    return ctx.dataset(next(iter(ctx.cfg.datasets)))


# --------------------------------------------------------------------------- 1. model type


@study("model-type")
def model_type(ctx: Context, out: Path) -> tuple[list[dict[str, Any]], list[Section]]:
    """Paper Tab. 1 / CVPR Tab. 2: ManiFPT in every space vs the eight prior methods."""
    rows, sections = [], []
    for name in ctx.cfg.datasets:
        p = ctx.dataset(name)
        task = f"model-type:{name}"
        r, _ = ctx.compare(p, models=p.main_models, task=task)
        rows += r
        n = len(p.main_models)
        sections.append(Section(f"Model-type attribution on {name} ({n} models, chance {100 / n:.1f} %)",
                                tables=[paper_table(r, task)]))
        paired = paired_table(r, task)
        if paired is not None:
            sections.append(Section(f"Paired differences on {name}: every method against the best (same splits)",
                                    tables=[paired]))
    sections.append(Section("Paper (CVPR Tab. 2), for comparison", tables=[PAPER_MODEL_TYPE]))
    return rows, sections


# --------------------------------------------------------------------------- 2. training set


@study("train-data")
def train_data(ctx: Context, out: Path) -> tuple[list[dict[str, Any]], list[Section]]:
    """Seed Tab. 5: attribute the training set of a fixed model from raw features vs from artifacts."""
    rows, sections = [], []
    for name in ctx.cfg.datasets:
        p = ctx.dataset(name)
        for base, copies in p.copies().items():
            task = f"train-data:{name}:{base}"
            raw, _ = ctx.compare(p, models=copies, target="train_data", task=task, methods=[],
                                 spaces=["rgb", "freq"], projections=["raw"])
            art, _ = ctx.compare(p, models=copies, target="train_data", task=task, methods=[],
                                 projections=["nn1"])
            rows += raw + art
            body = []
            for r in raw + art:
                if r["metric"] == "accuracy":
                    label = f"raw {r['space'].upper()}" if r["method"] != "manifpt" else f"ManiFPT-{r['space'].upper()}"
                    body.append([label, fmt_pm(r["mean"], r["std"], r["n_seeds"], True)])
            sections.append(Section(f"Training-set attribution: {base} on {', '.join(copies)} ({name}; chance "
                                    f"{100 / len(copies):.0f} %)", tables=[(["features", "accuracy (%)"], body)]))
    if not rows:
        sections.append(Section("Training-set attribution", "No model was trained on more than one real set."))
    sections.append(Section("Paper (seed Tab. 5), for comparison", tables=[PAPER_TRAIN_DATA]))
    return rows, sections


# --------------------------------------------------------------------------- 3. layer type


@study("layer-type")
def layer_type(ctx: Context, out: Path) -> tuple[list[dict[str, Any]], list[Section]]:
    """Seed Tab. 6: NMI between k-means clusters of artifacts and each design factor, per space."""
    rows, sections = [], []
    factors = ctx.cfg.layer_factors
    for name in ctx.cfg.datasets:
        p = ctx.dataset(name)
        real_set, gen = ctx.sets(p.manifold, p.gen)
        gen = gen.select_models(p.main_models)
        table_rows = []
        per_factor: dict[str, list[float]] = {f: [] for f in factors}
        for space in ctx.cfg.spaces:
            store, _ = artifact_store(real_set, gen, space, ctx.cfg.space_options.get(space),
                                      show_progress=ctx.show_progress)
            tab = store.table()
            line = [f"ManiFPT-{space.upper()}"]
            for f in factors:
                vals = np.array([r.get(f, "n/a") for r in tab])
                sel = np.flatnonzero(vals != "n/a")
                if len(set(vals[sel].tolist())) < 2:
                    line.append("–")
                    continue
                keep = sel[subsample(vals[sel], ctx.cfg.max_per_class)]
                nmis = [kmeans_nmi(store.artifacts(keep), vals[keep], seed) for seed in ctx.cfg.seeds]
                m = float(np.mean(nmis))
                per_factor[f].append(m)
                rows.append(seed_row(f"layer-type:{name}", f, "manifpt", space, "nmi_kmeans", nmis, ctx.cfg.seeds))
                line.append(f"{m:.3f}")
            table_rows.append(line)
        avg = ["average"] + [f"{np.mean(per_factor[f]):.3f}" if per_factor[f] else "–" for f in factors]
        table_rows.append(avg)
        sections.append(Section(f"Layer type vs artifacts on {name}: NMI of k-means clusters (k = number of "
                                "values; models where the factor applies; mean over seeds of k-means)",
                                tables=[(["space", *factors], table_rows)]))
    sections.append(Section("Paper (seed Tab. 6, average row recomputed), for comparison",
                            tables=[PAPER_LAYER_NMI]))
    return rows, sections


# --------------------------------------------------------------------------- 4. cross-dataset


@study("cross-dataset")
def cross_dataset(ctx: Context, out: Path) -> tuple[list[dict[str, Any]], list[Section]]:
    """CVPR Tab. 4: train on the zoo of one real set, test on the same model types trained on another.

    With two datasets of equal shape and shared model names, train on one and test on the other;
    within one zoo, the train-data copies play that role (train on ``<model>__<set A>``, test on
    ``<model>__<set B>``).
    """
    from ..nn.nets import arch_for
    from ..splits import stratified_split

    rows, body = [], []
    pairs = _cross_pairs(ctx)
    for (pa, models_a), (pb, models_b), label in pairs:
        base = [m.split("__", 1)[0] for m in models_a]
        for space in ctx.cfg.spaces:
            data = []
            for p, models in ((pa, models_a), (pb, models_b)):
                real_set, gen = ctx.sets(p.manifold, p.gen)
                gen = gen.select_models(models)
                store, manifold = artifact_store(real_set, gen, space, ctx.cfg.space_options.get(space),
                                                 show_progress=ctx.show_progress)
                y = np.array([m.split("__", 1)[0] for m in store.labels("model")])
                keep = subsample(y, ctx.cfg.max_per_class)
                data.append((store.artifacts(keep), y[keep], tuple(store.manifest["artifact_shape"]) or None))
            (xa, ya, shape), (xb, yb, _) = data
            a = ctx.attributor()
            make = attributor_factory(a.model_copy(update={"arch": arch_for(a.arch, shape)}), shape,
                                      manifold.space.positional, ctx.show_progress)
            accs = []
            for seed in ctx.cfg.seeds:
                sp = stratified_split(ya, (0.8, 0.2, 0.0), seed)
                att = make(seed)
                att.fit(xa[sp["train"]], ya[sp["train"]], xa[sp["val"]], ya[sp["val"]])
                accs.append(float((att.predict(xb) == yb).mean()))
            m, s = mean_std(accs)
            rows.append(seed_row(f"cross-dataset:{label}", "model", "manifpt", space, "accuracy", accs, ctx.cfg.seeds))
            body.append([label, f"ManiFPT-{space.upper()}", fmt_pm(m, s, len(accs), True),
                         f"{100 / len(set(base)):.0f}"])
    sections = [Section("Cross-dataset attribution (train → test)", tables=[
        (["train → test", "method", "accuracy (%)", "chance (%)"], body)] if body else [],
        text="" if body else "Needs two zoos with shared model types, or ≥ 2 models with train-data copies.")]
    return rows, sections


def _cross_pairs(ctx: Context) -> list[tuple[tuple[Prepared, list[str]], tuple[Prepared, list[str]], str]]:
    names = list(ctx.cfg.datasets)
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            pa, pb = ctx.dataset(a), ctx.dataset(b)
            shared = sorted(set(pa.main_models) & set(pb.main_models))
            if len(shared) >= 2:
                pairs += [((pa, shared), (pb, shared), f"{a}→{b}"), ((pb, shared), (pa, shared), f"{b}→{a}")]
    if not pairs:
        p = _first(ctx)
        copies = p.copies()
        sets = sorted({c.split("__", 1)[1] for cs in copies.values() for c in cs})
        if len(copies) >= 2 and len(sets) >= 2:
            a, b = sets[:2]
            ma = [f"{m}__{a}" for m in copies if f"{m}__{a}" in p.models and f"{m}__{b}" in p.models]
            mb = [m.replace(f"__{a}", f"__{b}") for m in ma]
            if len(ma) >= 2:
                pairs += [((p, ma), (p, mb), f"{a}→{b}"), ((p, mb), (p, ma), f"{b}→{a}")]
    return pairs


# --------------------------------------------------------------------------- 5. figures


@study("figures")
def figures(ctx: Context, out: Path) -> tuple[list[dict[str, Any]], list[Section]]:
    """Fig. 1 (t-SNE: pixels, SL embedding, a baseline's features, artifacts) and Fig. 3–5 (triplets)."""
    from ..baselines import get_baseline
    from ..figures import triplet_figure
    from ..report import tsne_figure
    from ..spaces import get_space

    p = _first(ctx)
    real_set, gen = ctx.sets(p.manifold, p.gen)
    gen = gen.select_models(p.main_models)
    labels = np.array(gen.models)
    keep = subsample(labels, ctx.cfg.tsne_per_class)
    images = gen.images.load(keep)
    panels: list[tuple[str, np.ndarray]] = [("pixels", images.astype(np.float32))]
    panels.append(("SL embedding", get_space("sl", **ctx.cfg.space_options.get("sl", {})).embed(images)))
    rest = np.setdiff1d(np.arange(len(labels)), keep)
    train = rest[subsample(labels[rest], ctx.cfg.max_per_class or 200)]
    base = get_baseline("durall20", seed=0).fit(gen.images.load(train), labels[train])
    panels.append(("Durall20 features", base.features(images)))
    figs = []
    for space in ctx.cfg.spaces:
        store, _ = artifact_store(real_set, gen, space, ctx.cfg.space_options.get(space),
                                  show_progress=ctx.show_progress)
        panels.append((f"ManiFPT-{space.upper()} artifacts", store.artifacts(keep)))
        if store.manifest["artifact_shape"]:  # image-shaped artifacts
            triplet_figure(store.root, out / "figures" / f"triplets-{space}.png", per_model=1)
            figs.append(f"figures/triplets-{space}.png")
    tsne_figure(panels, labels[keep], out / "figures" / "tsne.png")
    return [], [Section("t-SNE of generated images by model (paper Fig. 1)", figures=["figures/tsne.png"]),
                Section("Artifacts (paper Fig. 3–5): x_G, x*, a per model", figures=figs)]


# --------------------------------------------------------------------------- 6. theory check


@study("theory")
def theory(ctx: Context, out: Path) -> tuple[list[dict[str, Any]], list[Section]]:
    """App. A: per model d_FPT (max / p95 artifact norm) next to k-NN precision and recall."""
    from ..figures import theory_figure
    from ..theory import d_fpt, precision_recall

    p = _first(ctx)
    space = ctx.cfg.theory_space
    real_set, gen = ctx.sets(p.manifold, p.gen)
    gen = gen.select_models(p.main_models)
    store, manifold = artifact_store(real_set, gen, space, ctx.cfg.space_options.get(space),
                                     show_progress=ctx.show_progress)
    tab = store.table()
    n_ref = min(len(real_set), 5000)
    ref_idx = np.sort(np.random.default_rng(0).permutation(len(real_set))[:n_ref])
    real_feats = np.asarray(manifold.embeddings_[ref_idx])
    rows, body, stats = [], [], []
    for model in p.main_models:
        idx = np.array([i for i, r in enumerate(tab) if r["model"] == model])[:1000]
        norms = np.array([float(tab[i]["artifact_norm"]) for i in idx])
        feats = manifold.embed(gen.images.load(idx))
        prec, rec = precision_recall(real_feats, feats, ctx.cfg.theory_k)
        d = d_fpt(norms)
        stats.append((d["d_fpt_p95"], d["d_fpt_max"], prec, rec))
        task = f"theory:{p.name}"
        for metric, v in (*d.items(), ("precision", prec), ("recall", rec)):
            rows.append(row(task, model, "manifpt", space, metric, v, 0.0, 1))
        body.append([model, f"{d['d_fpt_max']:.3g}", f"{d['d_fpt_p95']:.3g}", f"{d['artifact_norm_mean']:.3g}",
                     f"{prec:.3f}", f"{rec:.3f}"])
    s = np.array(stats)
    rho_p95 = spearmanr(s[:, 0], s[:, 2]).statistic if len(s) > 2 else float("nan")
    rho_max = spearmanr(s[:, 1], s[:, 2]).statistic if len(s) > 2 else float("nan")
    rows.append(row(f"theory:{p.name}", "models", "manifpt", space, "spearman_dfpt_p95_precision",
                    float(rho_p95), 0.0, 1))
    text = (f"{space.upper()} space; precision/recall: k = {ctx.cfg.theory_k} nearest-neighbour balls, "
            f"{n_ref} real vs ≤ 1000 generated samples per model. Spearman ρ(d_FPT p95, precision) = "
            f"{rho_p95:.3f}; ρ(d_FPT max, precision) = {rho_max:.3f}. The theory predicts d_FPT → 0 as "
            "precision → 1, i.e. a negative correlation.")
    fig = theory_figure(list(p.main_models), [x[0] for x in stats], [x[2] for x in stats], [x[3] for x in stats],
                        out / f"theory-{p.name}.png", f"{space.upper()} space, {p.name}")
    return rows, [Section("Theory check (App. A): d_FPT vs precision and recall", text,
                          tables=[(["model", "d_FPT max", "d_FPT p95", "mean ‖a‖", "precision", "recall"], body)],
                          figures=[fig.name])]


# --------------------------------------------------------------------------- 7. manifold density


@study("density")
def density(ctx: Context, out: Path) -> tuple[list[dict[str, Any]], list[Section]]:
    """New: accuracy and mean artifact norm as the number of real images forming the manifold grows."""
    from ..figures import density_figure

    p = _first(ctx)
    space = ctx.cfg.density_space
    rows, body = [], []
    sizes, values, norms = [], [], []  # the figure's curve
    n_real = len(list(p.real.glob("*.png")))
    for size in ctx.cfg.density_sizes:
        n = n_real if size == "all" else min(int(size), n_real)
        folder = subset_folder(p.real, ctx.data_root / p.name / f"manifold-{n}", None if n == n_real else n)
        task = f"density:{p.name}"
        r, _ = ctx.compare(p, manifold=folder, models=p.main_models, spaces=[space], methods=[], task=task)
        acc = next(x for x in r if x["metric"] == "accuracy")
        real_set, gen = ctx.sets(folder, p.gen)
        store, _ = artifact_store(real_set, gen.select_models(p.main_models), space,
                                  ctx.cfg.space_options.get(space), show_progress=ctx.show_progress)
        norm = float(np.mean([float(t["artifact_norm"]) for t in store.table()]))
        rows += [{**acc, "target": f"n_real={n}"}, row(task, f"n_real={n}", "manifpt", space, "artifact_norm_mean",
                                                        norm, 0.0, 1)]
        body.append([str(n), fmt_pm(acc["mean"], acc["std"], acc["n_seeds"], True), f"{norm:.4g}"])
        sizes.append(n)
        values.append(acc["values"])
        norms.append(norm)
    fig = density_figure(sizes, values, norms, out / f"density-{p.name}.png",
                         f"{space.upper()} space, model-type task on {p.name}")
    return rows, [Section(f"Manifold density ({space.upper()} space, model-type task on {p.name})",
                          "Each row fits the manifold on a seeded subset of the real images (the same generated "
                          "images, splits and attributor): with more real images the nearest real sample is "
                          "closer, so artifacts shrink towards what the generator adds; the question is whether "
                          "attribution improves with them. Accuracy with its 95 % interval over seeds.",
                          tables=[(["real images in the manifold", "accuracy (%)", "mean ‖a‖"], body)],
                          figures=[fig.name])]


# --------------------------------------------------------------------------- 8. projection estimators


@study("projection")
def projection(ctx: Context, out: Path) -> tuple[list[dict[str, Any]], list[Section]]:
    """Issue 7: accuracy and mean artifact norm for each estimator of x* × space, with the raw control."""
    rows, sections = [], []
    for name in ctx.cfg.datasets:
        p = ctx.dataset(name)
        task = f"projection:{name}"
        r, _ = ctx.compare(p, models=p.main_models, spaces=ctx.cfg.projection_spaces, methods=[], task=task,
                           projections=ctx.cfg.projections)
        real_set, gen = ctx.sets(p.manifold, p.gen)
        gen = gen.select_models(p.main_models)
        body = []
        for space in ctx.cfg.projection_spaces:
            raw = next(x for x in r if x["metric"] == "accuracy" and x["space"] == space
                       and x["method"] == "manifpt[raw]")
            for proj in ctx.cfg.projections:
                method = "manifpt" if proj == "nn1" else f"manifpt[{proj}]"
                acc = next(x for x in r if x["metric"] == "accuracy" and x["space"] == space and x["method"] == method)
                store, _ = artifact_store(real_set, gen, space, ctx.cfg.space_options.get(space),
                                          show_progress=ctx.show_progress, projection=proj,
                                          projection_options=ctx.cfg.projection_options.get(proj))
                norm = float(np.mean([float(t["artifact_norm"]) for t in store.table()]))
                rows.append(row(task, "model", method, space, "artifact_norm_mean", norm, 0.0, 1))
                body.append([space.upper(), proj, fmt_pm(acc["mean"], acc["std"], acc["n_seeds"], True),
                             f"{100 * (acc['mean'] - raw['mean']):+.1f}", f"{norm:.4g}"])
        rows += r
        sections.append(Section(f"Estimators of x* on {name} (model-type task)", tables=[
            (["space", "projection", "accuracy (%)", "vs raw (points)", "mean ‖a‖"], body)]))
    return rows, sections


# --------------------------------------------------------------------------- 9. open set


@study("openset")
def openset(ctx: Context, out: Path) -> tuple[list[dict[str, Any]], list[Section]]:
    """Issue 19: for each protocol of ``openset_protocols`` (random: three sources drawn per seed;
    unseen-<factor>: every source with one value of a factor), train on the known sources, reject the
    held-out ones (AUROC / OSCR / TNR95 of every score in every space, and the baselines' maximum
    softmax probability), enrol each from k of its images, and cluster the rejected images."""
    from ..errors import UsageError
    from ..openset import evaluate_openset, protocol_splits
    from ..openset_run import baseline_openset, describe, summarise
    from ..pipeline import manifpt_method

    rows: list[dict[str, Any]] = []
    sections = []
    for name in ctx.cfg.datasets:
        p = ctx.dataset(name)
        splits = {}
        for protocol in ctx.cfg.openset_protocols:
            try:
                splits[protocol] = protocol_splits(protocol, p.models, ctx.cfg.seeds, main=p.main_models)
            except UsageError as e:
                sections.append(Section(f"Open-set attribution on {name}, protocol {protocol}", text=str(e)))
        used = sorted({m for sp in splits.values() for k, u in sp.values() for m in (*k, *u)})
        if not used:
            continue
        real_set, gen = ctx.sets(p.manifold, p.gen)
        gen = gen.select_models(used)
        y_all = np.asarray(gen.labels("model"))
        keep = subsample(y_all, ctx.cfg.max_per_class)
        y = y_all[keep]
        res: dict[str, dict[tuple[str, str], list[dict[str, Any]]]] = {pr: {} for pr in splits}
        for space in ctx.cfg.spaces:
            method, *_ = manifpt_method(real_set, gen, keep, space, ctx.attributor(),
                                        space_options=ctx.cfg.space_options.get(space), per_space_arch=True,
                                        show_progress=ctx.show_progress)
            for pr, sp in splits.items():
                res[pr][("manifpt", space)] = [evaluate_openset(method.X, y, u, s, method.make, known=k)
                                               for s, (k, u) in sp.items()]
        images = gen.images.load(keep) if ctx.baselines() else None
        for b in ctx.baselines():
            for pr, sp in splits.items():
                res[pr][(b, "image")] = [baseline_openset(b, ctx.cfg.baseline_options.get(b, {}), images, y, u, s,
                                                          known=k) for s, (k, u) in sp.items()]
        for pr, sp in splits.items():
            n_known = sorted({len(k) for k, _ in sp.values()})
            title = (f"{name}, protocol {pr}: {'/'.join(map(str, n_known))} known sources, held out "
                     f"{describe(sp)}")
            r, secs = summarise(res[pr], f"openset:{name}:{pr}", title, out, f"roc-{name}-{pr}.png")
            rows += r
            sections += secs
    return rows, sections


# --------------------------------------------------------------------------- 10. robustness


@study("robustness")
def robustness(ctx: Context, out: Path) -> tuple[list[dict[str, Any]], list[Section]]:
    """Issue 20: every ManiFPT space and baseline tested on perturbed copies of the test split
    (``robustness_perturb``), trained on clean images and on augmented ones (``robustness_augment``,
    Wang20-style, strengths deliberately other than the test ones)."""
    from ..figures import robustness_figure
    from ..report import robustness_table

    rows, sections = [], []
    for name in ctx.cfg.datasets:
        p = ctx.dataset(name)
        task = f"robustness:{name}"
        r = []
        for augment in ([], ctx.cfg.robustness_augment):
            got, _ = ctx.compare(p, models=p.main_models, task=task, perturb=ctx.cfg.robustness_perturb,
                                 augment=augment)
            r += got
        rows += r
        fig = robustness_figure(r, out / f"robustness-{name}.png")
        sections.append(Section(
            f"Robustness on {name} ({len(p.main_models)} models, chance {100 / len(p.main_models):.1f} %)",
            text=f"Accuracy (%) on the test split, clean and perturbed ({', '.join(ctx.cfg.robustness_perturb)}); "
                 "the real manifold is untouched. `+aug`: trained with half of the training images perturbed by one "
                 f"of {', '.join(ctx.cfg.robustness_augment)} (the artifacts of augmented images computed once).",
            tables=[robustness_table(r, task)], figures=[fig.name]))
    return rows, sections


# --------------------------------------------------------------------------- 11. learner × input


def _input_label(method: str, space: str) -> str:
    """The input of a learner-grid method: ``RGB nn1``, ``FREQ raw``, ... (``images`` for a baseline)."""
    if not method.startswith("manifpt"):
        return "images (published recipe)"
    base = method.split("@", 1)[0]
    proj = base[len("manifpt["):-1] if base.startswith("manifpt[") else "nn1"
    return f"{space.upper()} {proj}"


def _learner_of(method: str) -> str:
    if method == "manifpt-fused":
        return "fused"
    if not method.startswith("manifpt"):
        return method
    return method.split("@", 1)[1] if "@" in method else "attributor"


def _paired_pairs(rows: list[dict[str, Any]], pairs: list[tuple[tuple[str, str], tuple[str, str]]],
                  labels: list[str]) -> tuple[list[str], list[list[str]]]:
    """One line per (A, B) pair: A − B seed by seed (``metrics.paired_difference``), in points."""
    from ..metrics import by_seed, paired_difference
    from ..report import PAIRED_COLUMNS, paired_cells

    by = {(r["method"], r["space"]): r for r in rows}
    body = []
    for label, (a, b) in zip(labels, pairs, strict=True):
        if a not in by or b not in by:
            continue
        va, vb = by_seed(by[a]), by_seed(by[b])
        common = sorted(set(va) & set(vb))
        d = paired_difference([va[s] for s in common], [vb[s] for s in common])
        body.append([label, *paired_cells(d)])
    return ["comparison", *PAIRED_COLUMNS], body


@study("learner-input")
def learner_input(ctx: Context, out: Path) -> tuple[list[dict[str, Any]], list[Section]]:
    """Issue 21: is it the fingerprint or the learner? Every learner of ``grid_learners`` on every input
    (``grid_spaces`` × ``grid_projections``, ``raw`` being the control), their late fusion
    (``manifpt-fused``, chosen on validation only) and the baselines ``grid_baselines`` on images, on
    the same ``grid_seeds`` splits; paired differences against the best baseline and the raw control."""
    import json

    from ..report import method_label

    cfg = ctx.cfg
    rows, sections = [], []
    for name in cfg.datasets:
        p = ctx.dataset(name)
        task = f"learner-input:{name}"
        r, _ = ctx.compare(p, out=out / name, models=p.main_models, task=task, spaces=cfg.grid_spaces,
                           projections=cfg.grid_projections, learners=cfg.grid_learners, fuse=True,
                           methods=cfg.grid_baselines, seeds=cfg.grid_seeds)
        rows += r
        acc = [x for x in r if x["metric"] == "accuracy" and "perturbation" not in x]
        fused = next((x for x in acc if x["method"] == "manifpt-fused"), None)
        cell = {(_learner_of(x["method"]), _input_label(x["method"], x["space"])): x for x in acc if x is not fused}
        if fused is not None:
            cell[("fused", "all (fused)")] = fused
        inputs = sorted({i for _, i in cell}, key=lambda i: (i.startswith("images"), i.startswith("all"), i))
        learners = list(dict.fromkeys(lr for lr, _ in cell))
        body = [[learner, *(fmt_pm(cell[(learner, i)]["mean"], cell[(learner, i)]["std"], cell[(learner, i)]["n_seeds"],
                                   True) if (learner, i) in cell else "" for i in inputs)] for learner in learners]
        n = len(p.main_models)
        text = (f"Model-type attribution, {n} models (chance {100 / n:.1f} %), accuracy (%) mean ± std over seeds "
                f"{cfg.grid_seeds}, every cell on the same splits. A row is one learner, a column one input: "
                "`raw` is the embedding itself (RGB raw: the image), `nn1` the artifact against the nearest real "
                "image. Grid learners train on the training part and early-stop on the validation part; the "
                "baselines' own rows keep their published protocol (trained on training + validation). The "
                "fused method combines every grid cell, chosen on the validation part only (`manifpt.fusion`).")
        sections.append(Section(f"Learner × input on {name}", text, tables=[(["learner", *inputs], body)]))
        base = [x for x in acc if not x["method"].startswith("manifpt")]
        if base:
            best = max(base, key=lambda x: x["mean"])
            ref = (best["method"], best["space"])
            sections.append(Section(f"Paired differences on {name} against the best baseline, "
                                    f"{method_label(*ref)}", tables=[paired_table(r, task, against=ref)]))
        raw = "manifpt[raw]"
        pairs, labels = [], []
        for x in acc:  # each learner's artifact inputs against the same learner on the same space's raw input
            m, s = x["method"], x["space"]
            if not m.startswith("manifpt[raw]") and m != "manifpt-fused" and m.startswith("manifpt"):
                learner = _learner_of(m)
                ctrl = raw if learner == "attributor" else f"{raw}@{learner}"
                pairs.append(((m, s), (ctrl, s)))
                labels.append(f"{learner}: {_input_label(m, s)} − {s.upper()} raw")
        if fused is not None and "rgb" in cfg.grid_spaces:
            pairs.append((("manifpt-fused", fused["space"]), (raw, "rgb")))
            labels.append("fused − raw control (attributor on RGB raw)")
        sections.append(Section(f"Fingerprint or learner? Each learner's artifacts against its raw input, on {name}",
                                "Each learner's accuracy on an artifact input minus its accuracy on the raw input of "
                                "the same space, seed by seed. A significant positive difference says that the "
                                "fingerprint (the difference to the nearest real image) helps that learner.",
                                tables=[_paired_pairs(acc, pairs, labels)]))
        weights: dict[str, list[float]] = {}
        for f in sorted((out / name / "models").glob("manifpt-fused-*/seed-*/fusion.json")):
            for m in json.loads(f.read_text())["members"]:
                weights.setdefault(f"{method_label(m['method'], m['space'])}", []).append(m["weight"])
        if weights:
            wbody = [[k, f"{np.mean(v):.2f}", f"{np.count_nonzero(v)}/{len(v)}"]
                     for k, v in sorted(weights.items(), key=lambda kv: -np.mean(kv[1]))]
            sections.append(Section(f"What the fusion chose on {name}", "Greedy ensemble selection by validation NLL "
                                    "over temperature-scaled probabilities (`manifpt.fusion`); mean weight over seeds "
                                    "and the number of seeds in which the member was selected.",
                                    tables=[(["member", "mean weight", "selected in"], wbody)]))
    return rows, sections
