"""Human reports: results tables, confusion matrices, t-SNE panels (paper Fig. 1), artifact triplets.

A report is a list of sections (title, text, tables, figures) rendered to both Markdown and a
self-contained HTML page (figures are PNG files next to it), so the two never disagree.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from .cache import atomic_write_text
from .evaluate import method_label as method_label
from .figures import save_figure
from .metrics import Key, paired_differences
from .metrics import by_seed as by_seed


@dataclass
class Section:
    title: str
    text: str = ""
    tables: list[tuple[list[str], list[list[str]]]] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)  # paths relative to the report


def render_markdown(title: str, sections: Sequence[Section]) -> str:
    out = [f"# {title}\n"]
    for s in sections:
        out.append(f"## {s.title}\n")
        if s.text:
            out.append(s.text + "\n")
        for header, rows in s.tables:
            out.append("| " + " | ".join(header) + " |")
            out.append("|" + "---|" * len(header))
            out += ["| " + " | ".join(r) + " |" for r in rows]
            out.append("")
        out += [f"![{Path(f).stem}]({f})\n" for f in s.figures]
    return "\n".join(out) + "\n"


def inline_markdown(escaped: str) -> str:
    """The inline Markdown the reports' texts use (`code`, **bold**) as HTML, on already-escaped text."""
    import re

    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)


def render_html(title: str, sections: Sequence[Section]) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>"
             "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}img{max-width:100%}"
             f"</style></head><body><h1>{e(title)}</h1>"]
    for s in sections:
        parts.append(f"<h2>{e(s.title)}</h2>")
        if s.text:
            parts.append("".join(f"<p>{inline_markdown(e(p))}</p>" for p in s.text.split("\n\n")))
        for header, rows in s.tables:
            parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{inline_markdown(e(c))}</td>" for c in r) + "</tr>" for r in rows]
            parts.append("</table>")
        parts += [f"<p><img src='{e(f)}' alt='{e(Path(f).stem)}'></p>" for f in s.figures]
    return "\n".join(parts) + "</body></html>\n"


def write_report(out: Path, title: str, sections: Sequence[Section]) -> None:
    atomic_write_text(out / "report.md", render_markdown(title, sections))
    atomic_write_text(out / "report.html", render_html(title, sections))


def fmt_pm(mean: float, std: float, n: int, pct: bool) -> str:
    scale = 100 if pct else 1
    mean, std = (float("nan") if v is None else v for v in (mean, std))  # a NaN comes back from results.json as null
    return f"{mean * scale:.1f} ± {std * scale:.1f}" if n > 1 else f"{mean * scale:.3g}"


def results_table(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Rows of results.json → (method, space, target, metric, value) table; accuracies in %."""
    header = ["method", "space", "target", "metric", "value", "seeds"]
    body = []
    for r in rows:
        pct = r["metric"] in ("accuracy", "macro_f1")
        on = f" [{r['perturbation']}]" if "perturbation" in r else ""
        body.append([r["method"], r["space"], r["target"], r["metric"] + (" (%)" if pct else "") + on,
                     fmt_pm(r["mean"], r["std"], r["n_seeds"], pct), str(r["n_seeds"])])
    return header, body


def confusion_figure(confusions: Sequence[np.ndarray], labels: Sequence[str], path: Path, title: str) -> Path:
    """Row-normalised confusion matrix summed over seeds."""
    c = np.sum(confusions, axis=0).astype(np.float64)
    c = c / np.clip(c.sum(1, keepdims=True), 1, None)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * n, 1.0 + 0.45 * n))
    ax.imshow(c, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            if c[i, j] >= 0.005:
                ax.text(j, i, f"{c[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if c[i, j] > 0.5 else "black")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def tsne_2d(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """PCA to ≤ 50 dims, then t-SNE (van der Maaten & Hinton 2008) to 2-D."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = np.asarray(x, np.float64).reshape(len(x), -1)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    if x.shape[1] > 50 and len(x) > 50:
        x = PCA(50, random_state=seed).fit_transform(x)
    perplexity = float(min(30, max(5, (len(x) - 1) / 4)))
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def tsne_figure(panels: Sequence[tuple[str, np.ndarray]], labels: Sequence[str], path: Path, seed: int = 0) -> Path:
    """One t-SNE scatter per representation, points coloured by class (paper Fig. 1)."""
    labels = np.asarray(labels)
    classes = sorted(set(labels.tolist()))
    cmap = plt.get_cmap("tab20" if len(classes) > 10 else "tab10")
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.6), squeeze=False)
    for ax, (name, x) in zip(axes[0], panels, strict=True):
        z = tsne_2d(x, seed)
        for k, c in enumerate(classes):
            sel = labels == c
            ax.scatter(z[sel, 0], z[sel, 1], s=4, color=cmap(k % cmap.N), label=c)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(fontsize=6, markerscale=2, loc="center left", bbox_to_anchor=(1, 0.5))
    return save_figure(fig, path)


def wild_sections(out: Path, cfg: dict[str, Any], rows: list[dict[str, Any]], audit: Any = None) -> list[Section]:
    """The robustness table and plot (when rows are perturbed) and the shortcut audit (an
    ``audit.AuditResult``), for the fit and compare reports."""
    sections = []
    robust = robustness_table(rows)
    if robust is not None:
        from .figures import robustness_figure

        robustness_figure(rows, out / "figures" / "robustness.png")
        trained = f"augmented ({', '.join(cfg['augment'])})" if cfg.get("augment") else "clean"
        sections.append(Section("Robustness: accuracy on perturbed copies of the test split (%)",
                                "The real manifold is untouched; a perturbed image gets a new artifact against it. "
                                f"Training: {trained}.", tables=[robust], figures=["figures/robustness.png"]))
    if audit is not None:
        done = f" Every image was re-encoded as {cfg['reencode']} before attribution." if cfg.get("reencode") else ""
        sections.append(Section("Shortcut audit: file metadata per class (audit.json, audit.md)",
                                (f"**Warning:** {audit.warning}" if audit.warning else
                                 "No shortcut found: the file metadata does not tell the classes apart.") + done,
                                tables=audit.tables()))
    return sections


def write_fit_report(out: Path, run: dict[str, Any], rows: list[dict[str, Any]], results: list, store: Any,
                     manifold: Any, keep: np.ndarray, labels: np.ndarray, audit: Any = None) -> None:
    """Report of one `manifpt fit` run: results, per-class recall, confusion, t-SNE, triplets."""
    from .data import read_image
    from .figures import triplet_figure

    cfg = run["config"]
    classes = run["classes"]
    figs = out / "figures"
    sections = [Section("Run", f"Target `{cfg['target']}` from {cfg['space'].upper()} artifacts; real set "
                               f"{cfg['real']}, generated set {cfg['generated']}; {run['n_items']} images, "
                               f"{len(classes)} classes (chance {100 / len(classes):.1f} %), seeds {cfg['seeds']}, "
                               f"split {cfg['fractions']} (train/val/test, stratified).")]
    sections.append(Section("Results (mean ± std over seeds)",
                            tables=[results_table([r for r in rows if "perturbation" not in r])]))
    recall = [[c, *[f"{100 * r.metrics['recall'][c]:.1f}" for r in results]] for c in classes]
    sections.append(Section("Per-class recall (%)", tables=[(["class", *[f"seed {r.seed}" for r in results]],
                                                             recall)]))
    confusion_figure([np.array(r.metrics["confusion"]) for r in results], classes, figs / "confusion.png",
                     f"{cfg['space'].upper()} artifacts → {cfg['target']}")
    sec = Section("Confusion matrix (summed over seeds, row-normalised)", figures=["figures/confusion.png"])
    sections.append(sec)
    if cfg.get("tsne") and results and results[0].features is not None:
        r0 = results[0]
        rng = np.random.default_rng(0)
        sel = np.sort(rng.permutation(len(r0.test_idx))[:1000])
        idx = r0.test_idx[sel]
        table = store.table()
        items = keep[idx]
        man = store.manifest
        channels = 1 if len(man["image_shape"]) == 2 else 3
        pixels = np.stack([read_image(Path(man["generated"]["root"]) / table[i]["path"], channels,
                                      man["generated"]["resize"]) for i in items])
        art = store.artifacts(items)
        emb = manifold.embed(pixels)
        tsne_figure([("pixels", pixels.astype(np.float32)), (f"{cfg['space'].upper()} embedding", emb),
                     ("artifacts", art),
                     ("attributor features", r0.features[sel])], labels[idx], figs / "tsne.png")
        sections.append(Section("t-SNE (test images of seed 0; paper Fig. 1)", figures=["figures/tsne.png"]))
    triplet_figure(store.root, figs / "triplets.png", per_model=2)
    sections.append(Section("Artifacts (x_G, x*, a) per model", figures=["figures/triplets.png"]))
    sections += wild_sections(out, cfg, rows, audit)
    write_report(out, f"manifpt fit: {cfg['target']} from {cfg['space'].upper()} artifacts", sections)


def paper_table(rows: Sequence[dict[str, Any]], task: str | None = None) -> tuple[list[str], list[list[str]]]:
    """Paper Tab. 1 layout: one line per method; accuracy ± std, macro-F1 and FD ratios (clean test
    images; ``robustness_table`` has the perturbed ones)."""
    rows = [r for r in rows if (task is None or r["task"] == task) and "perturbation" not in r]
    keys = []
    for r in rows:
        if r["metric"] == "accuracy" and (r["method"], r["space"]) not in keys:
            keys.append((r["method"], r["space"]))
    keys.sort(key=lambda k: (k[0].startswith("manifpt"), k[1], k[0]))

    def get(method: str, space: str, metric: str) -> str:
        for r in rows:
            if (r["method"], r["space"], r["metric"]) == (method, space, metric) and r["target"] == rows[0]["target"]:
                return fmt_pm(r["mean"], r["std"], r["n_seeds"], metric in ("accuracy", "macro_f1"))
        return "–"

    header = ["method", "accuracy (%)", "macro-F1 (%)", "FDR (features)", "FDR (artifacts)"]
    body = [[method_label(m, s), get(m, s, "accuracy"), get(m, s, "macro_f1"), get(m, s, "fd_ratio_features"),
             get(m, s, "fd_ratio_artifacts")] for m, s in keys]
    return header, body


def paired_table(rows: Sequence[dict[str, Any]], task: str | None = None, metric: str = "accuracy",
                 against: Key | None = None) -> tuple[list[str], list[list[str]]] | None:
    """Every method against one (``against``: (method, space); default the best mean) on the same
    seeds' splits: mean difference (points), 95 % CI, paired t-test and sign-test p-values
    (``paired_differences``). ``None`` with fewer than two methods or seeds."""
    paired = paired_differences(rows, task, metric, against)
    if paired is None:
        return None
    ref, diffs = paired
    return [f"method − {method_label(*ref)}", *PAIRED_COLUMNS], [[method_label(*key), *paired_cells(d)]
                                                                 for key, d in diffs]


#: the columns ``paired_cells`` fills
PAIRED_COLUMNS = ("difference (points)", "95 % CI", "paired t p", "sign test p", "seeds")


def paired_cells(d: dict[str, float]) -> list[str]:
    """A ``metrics.paired_difference`` result as table cells (``PAIRED_COLUMNS``), in points."""
    return [f"{100 * d['mean']:+.1f}", f"[{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]", f"{d['t_p']:.3g}",
            f"{d['sign_p']:.3g}", str(d["n"])]


def slug(text: str) -> str:
    """A task name as a safe file-name part: ``model-type:fmnist`` → ``model-type-fmnist``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def accuracy_sections(rows: Sequence[dict[str, Any]], out: Path, folder: str = "", metric: str = "accuracy",
                      chance: float | None = None) -> list[Section]:
    """One section per (task, target) whose clean ``metric`` rows have several seeds for ≥ 2 methods:
    ``figures.accuracy_figure`` in ``out/folder/accuracy-<task>.png`` (the target added where a task has
    several), its path relative to ``out``. Drawn from the rows alone, so every study's report and the
    compare report get it without code of their own."""
    from .figures import accuracy_figure

    methods: dict[tuple[str, str], set[Key]] = {}
    for r in rows:
        if r["metric"] == metric and "perturbation" not in r and len(r.get("values", [])) > 1:
            methods.setdefault((r["task"], r["target"]), set()).add((r["method"], r["space"]))
    groups = [g for g, m in methods.items() if len(m) >= 2]
    sections = []
    for task, target in groups:
        several = sum(t == task for t, _ in groups) > 1
        name = f"{slug(metric)}-{slug(f'{task}-{target}' if several else task)}.png"
        rel = f"{folder}/{name}" if folder else name
        accuracy_figure([r for r in rows if (r["task"], r["target"]) == (task, target)], out / rel, task, metric,
                        chance)
        sections.append(Section(
            f"{task}{f' ({target})' if several else ''}: {metric} per method and paired differences from the best",
            "Left: mean over seeds (%) with the 95 % t interval of the per-seed values. Right: each method minus "
            "the best on the same seeds' splits, with its 95 % CI (the paired-differences table); an interval "
            "that excludes 0 is a difference significant at 5 %.", figures=[rel]))
    return sections


def robustness_table(rows: Sequence[dict[str, Any]], task: str | None = None,
                     metric: str = "accuracy") -> tuple[list[str], list[list[str]]] | None:
    """One line per method: clean accuracy, then accuracy under each perturbation (``None`` when no
    row is perturbed)."""
    rows = [r for r in rows if r["metric"] == metric and (task is None or r["task"] == task)]
    perts = list(dict.fromkeys(r["perturbation"] for r in rows if "perturbation" in r))
    if not perts:
        return None
    keys = sorted({(r["method"], r["space"]) for r in rows}, key=lambda k: (k[0].startswith("manifpt"), k[1], k[0]))
    cell = {(r["method"], r["space"], r.get("perturbation")): fmt_pm(r["mean"], r["std"], r["n_seeds"], True)
            for r in rows}
    body = [[method_label(m, s), *(cell.get((m, s, p), "–") for p in (None, *perts))] for m, s in keys]
    return ["method", f"clean {metric} (%)", *perts], body


def write_compare_report(out: Path, cfg: dict[str, Any], rows: list[dict[str, Any]], results: list,
                         classes: list[str], audit: Any = None) -> None:
    figs = out / "figures"
    sections = [Section("Setup", f"Target `{cfg['target']}` ({len(classes)} classes, chance "
                                 f"{100 / len(classes):.1f} %); real set {cfg['real']}; generated set "
                                 f"{cfg['generated']}; seeds {cfg['seeds']}; the same stratified split per seed "
                                 "for every method. FDR (features): FD ratio of each method's representation "
                                 "(the attributor's penultimate layer for learned methods); FDR (artifacts): of "
                                 "the ManiFPT artifacts themselves.")]
    sections.append(Section("Results (mean ± std over seeds)", tables=[paper_table(rows)]))
    paired = paired_table(rows)
    if paired is not None:
        sections.append(Section("Paired differences against the best method (same splits, seed by seed)",
                                "A difference is significant at 5 % when its CI excludes 0 (t-test); the sign test "
                                "assumes nothing about the differences but cannot reach 5 % with fewer than 6 seeds.",
                                tables=[paired]))
    sections += accuracy_sections(rows, out, "figures", chance=1 / len(classes))
    keys = sorted({(r.method, r.space) for r in results}, key=lambda k: (k[0].startswith("manifpt"), k))
    fig_paths = []
    for m, s in keys:
        conf = [np.array(r.metrics["confusion"]) for r in results if (r.method, r.space) == (m, s)]
        name = f"confusion-{method_label(m, s)}.png"
        confusion_figure(conf, classes, figs / name, method_label(m, s))
        fig_paths.append(f"figures/{name}")
    sections.append(Section("Confusion matrices (summed over seeds, row-normalised)", figures=fig_paths))
    sections += wild_sections(out, cfg, rows, audit)
    write_report(out, f"manifpt compare: {cfg['target']}", sections)
