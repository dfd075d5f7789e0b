"""Artifact figures in the style of the paper's Fig. 3–5: (x_G, x*, artifact) per model."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from .data import read_image
from .spaces import Space, get_space
from .store import ArtifactStore


def save_figure(fig: plt.Figure, path: str | Path) -> Path:
    """Lay out, write (PNG, 110 dpi, parent folders made) and close a figure."""
    path = Path(path)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")  # legends placed outside the axes stay in
    plt.close(fig)
    return path


def _show(ax: plt.Axes, img: np.ndarray, title: str | None = None, cmap: str | None = None,
          signed: bool = False) -> None:
    lim = float(np.abs(img).max()) or 1.0
    ax.imshow(img, cmap=cmap if img.ndim == 2 else None, interpolation="nearest",
              vmin=-lim if signed else None, vmax=lim if signed else None)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def signed_to_unit(a: np.ndarray) -> np.ndarray:
    """Map a signed artifact to [0, 1] with 0 → 0.5, scaled by its largest magnitude."""
    m = float(np.abs(a).max())
    return np.clip(0.5 + a / (2 * m), 0, 1) if m > 0 else np.full_like(a, 0.5, dtype=np.float64)


def chw_to_display(x: np.ndarray) -> np.ndarray:
    return x[0] if x.shape[0] == 1 else np.transpose(x, (1, 2, 0))


def triplet_figure(store_dir: str | Path, out: str | Path, per_model: int = 2) -> Path:
    """One row per example: x_G, its nearest real x*, and the artifact (image or vector)."""
    store = ArtifactStore(Path(store_dir))
    man = store.manifest
    rows = store.table()
    space = man["space"]
    shape = man["image_shape"]
    channels = 1 if len(shape) == 2 else 3
    picks = []
    for model in man["models"]:
        idx = [i for i, r in enumerate(rows) if r["model"] == model][:per_model]
        picks.extend(idx)
    art = store.artifacts(np.array(picks, np.int64))
    sp = get_space(space)
    views = type(sp).view is not Space.view  # the space has a picture of its own (FREQ: the spectrum)
    ncol = 5 if views else 3
    fig, axes = plt.subplots(len(picks), ncol, figsize=(1.9 * ncol, 1.9 * len(picks)), squeeze=False)
    gen_root, real_root = Path(man["generated"]["root"]), Path(man["real"]["root"])
    for r, (i, a) in enumerate(zip(picks, art, strict=True)):
        row = rows[i]
        xg = read_image(gen_root / row["path"], channels, man["generated"]["resize"])
        xs = read_image(real_root / row["nn_path"], channels, man["real"]["resize"])
        ax = axes[r]
        _show(ax[0], xg, f"{row['model']}: $x_G$" if r == 0 or rows[picks[r - 1]]["model"] != row["model"]
              else "$x_G$", "gray")
        _show(ax[1], xs, f"$x^*$ (d²={float(row['nn_sqdist']):.3g})", "gray")
        if views:
            for c, x, name in ((2, xg, "$F(x_G)$"), (3, xs, "$F(x^*)$")):
                chw = (x[None] if x.ndim == 2 else x.transpose(2, 0, 1)) / 255.0
                _show(ax[c], sp.view(chw), name, "viridis")
            _show(ax[4], a.reshape(man["artifact_shape"]).mean(0), "artifact (mean over C)", "coolwarm", signed=True)
        elif man["artifact_shape"]:
            _show(ax[2], chw_to_display(signed_to_unit(a.reshape(man["artifact_shape"]))),
                  f"artifact (‖a‖={float(row['artifact_norm']):.3g})", "gray")
        else:
            ax[2].plot(a, lw=0.4)
            ax[2].set_title(f"artifact, {len(a)}-d (‖a‖={float(row['artifact_norm']):.3g})", fontsize=8)
            ax[2].set_xticks([])
    fig.suptitle(f"ManiFPT artifacts in {space.upper()} space", fontsize=10)
    return save_figure(fig, out)


def zoo_sheet(gen_dir: str | Path, out: str | Path, per_model: int = 16, real_dir: str | Path | None = None,
              cols: int = 6) -> Path:
    """One PNG with the first ``per_model`` samples of every model of a zoo (a 4×4 tile each), titled with
    the model's name and, when ``GEN/quality.json`` exists, its Fréchet distance to the real set.

    ``real_dir`` adds a tile of real images first, so a reader can judge "recognisably from the data".
    """
    import json

    from .data import GeneratedSet, ImageSet, list_image_files

    gen = GeneratedSet.from_folder(gen_dir, show_progress=False)
    qpath = Path(gen_dir) / "quality.json"
    fd = json.loads(qpath.read_text())["models"] if qpath.exists() else {}
    tiles: list[tuple[str, np.ndarray]] = []
    if real_dir is not None:
        real = ImageSet.from_folder(real_dir, files=list_image_files(real_dir)[:per_model], show_progress=False)
        tiles.append(("real", real.load(np.arange(len(real)))))
    models = np.asarray(gen.models)
    for m in gen.model_names:
        idx = np.flatnonzero(models == m)[:per_model]
        tiles.append((f"{m}" + (f"\nFD {fd[m]:.0f}" if m in fd else ""), gen.images.load(idx)))
    side = int(np.ceil(np.sqrt(per_model)))
    rows = int(np.ceil(len(tiles) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (title, imgs) in zip(axes.ravel(), tiles, strict=False):
        h, w = imgs.shape[1:3]
        canvas = np.zeros((side * h, side * w, *imgs.shape[3:]), imgs.dtype)
        for j, im in enumerate(imgs):
            r, c = divmod(j, side)
            canvas[r * h:(r + 1) * h, c * w:(c + 1) * w] = im
        ax.imshow(canvas, cmap="gray" if canvas.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(title, fontsize=7)
    return save_figure(fig, out)


def roc_figure(curves: dict[str, dict[str, list[float]]], grid: np.ndarray, path: str | Path) -> Path:
    """One panel per method/space, one rejection ROC per unknown-score (mean TPR over seeds at ``grid``)."""
    n = len(curves)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for ax, (label, by_score) in zip(axes.ravel(), curves.items(), strict=False):
        for score, tpr in by_score.items():
            ax.plot(grid, tpr, label=score)
        ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
        ax.set(title=label, xlabel="known images rejected", ylabel="unknown images rejected", xlim=(0, 1), ylim=(0, 1))
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    return save_figure(fig, path)


#: the strength at which each perturbation kind is the identity (the clean point of its curve)
CLEAN_STRENGTH = {"jpeg": 100, "webp": 100, "resize": 1, "blur": 0, "noise": 0, "crop": 1}


def robustness_figure(rows: list[dict], path: str | Path, metric: str = "accuracy") -> Path:
    """Accuracy vs strength, one panel per perturbation kind, one line per method (mean over seeds);
    the clean accuracy is the curve's point at the identity strength; augmented methods dashed, in
    their clean-trained twin's colour; the legend below the panels."""
    rows = [r for r in rows if r["metric"] == metric]
    kinds = list(dict.fromkeys(r["perturbation"].split(":")[0] for r in rows if "perturbation" in r))
    methods = sorted({(r["method"], r["space"]) for r in rows})
    bases = sorted({(m.removesuffix("+aug"), sp) for m, sp in methods})
    cmap = plt.get_cmap("tab20" if len(bases) > 10 else "tab10")
    colour = {b: cmap(i % cmap.N) for i, b in enumerate(bases)}
    fig, axes = plt.subplots(1, len(kinds), figsize=(3.6 * len(kinds), 3.4), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        for m, sp in methods:
            clean = [r["mean"] for r in rows if (r["method"], r["space"]) == (m, sp) and "perturbation" not in r]
            pts = {CLEAN_STRENGTH[kind]: clean[0]} if clean else {}
            pts.update({float(r["perturbation"].split(":")[1]): r["mean"] for r in rows
                        if (r["method"], r["space"]) == (m, sp) and r.get("perturbation", "").startswith(kind + ":")})
            if len(pts) < 2:
                continue
            xs = sorted(pts)
            label = (f"ManiFPT-{sp.upper()}" + m.removeprefix("manifpt")) if m.startswith("manifpt") else m
            ax.plot(xs, [100 * pts[x] for x in xs], marker="o", ms=3, label=label,
                    ls="--" if m.endswith("+aug") else "-", color=colour[(m.removesuffix("+aug"), sp)])
        ax.set(title=kind, xlabel="strength", ylabel=f"{metric} (%)")
        if kind in ("jpeg", "webp", "resize", "crop"):
            ax.invert_xaxis()  # stronger to the right
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(6, max(1, len(labels))),
               fontsize=7, frameon=False)
    return save_figure(fig, path)


def _ci_bars(centre_low_high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows (centre, low, high) → which rows have a bounded interval, and their error-bar lengths
    (2 × k, as ``errorbar`` wants): a single seed's unbounded interval gets no bar, not an infinite one."""
    c = np.asarray(centre_low_high, np.float64).reshape(-1, 3)
    ok = np.isfinite(c).all(axis=1)
    return ok, np.abs(c[ok, 1:] - c[ok, :1]).T


def accuracy_figure(rows: list[dict], path: str | Path, task: str | None = None, metric: str = "accuracy",
                    chance: float | None = None) -> Path:
    """Left: one bar per method (mean over seeds, %, best on top; ManiFPT blue, baselines grey) with the
    95 % t interval of its per-seed values (``metrics.mean_ci``; none for one seed), chance dashed.
    Right, when two methods have several seeds: each one's paired difference from the best (points,
    95 % CI, the numbers of ``report.paired_table``). Both are needed: seeds share splits, so two
    methods' overlapping bars can still differ significantly, which only the paired interval shows."""
    from .evaluate import method_label
    from .metrics import mean_ci, paired_differences

    rows = sorted((r for r in rows if r["metric"] == metric and "perturbation" not in r and r.get("values")
                   and (task is None or r["task"] == task)), key=lambda r: r["mean"])  # barh fills from the bottom
    paired = paired_differences(rows, metric=metric)
    fig, axes = plt.subplots(1, 2 if paired else 1, figsize=(10 if paired else 5.5, 1.3 + 0.3 * len(rows)),
                             squeeze=False)
    ax, y = axes[0][0], np.arange(len(rows))
    stats = 100 * np.array([mean_ci(r["values"]) for r in rows]).reshape(-1, 3)
    ax.barh(y, stats[:, 0], color=["C0" if r["method"].startswith("manifpt") else "0.6" for r in rows])
    ok, err = _ci_bars(stats)
    ax.errorbar(stats[ok, 0], y[ok], xerr=err, fmt="none", ecolor="k", capsize=3, lw=1)
    if chance is not None:
        ax.axvline(100 * chance, color="0.3", ls="--", lw=1, label=f"chance ({100 * chance:.1f} %)")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_yticks(y, [method_label(r["method"], r["space"]) for r in rows], fontsize=7)
    ax.set(xlabel=f"{metric} (%): mean and 95 % CI over seeds", xlim=(0, 100))  # CIs clipped to the range
    if paired:
        ref, diffs = paired
        ax, yd = axes[0][1], np.arange(len(diffs))
        d = 100 * np.array([[x["mean"], x["ci_low"], x["ci_high"]] for _, x in diffs[::-1]])  # best on top
        ok, err = _ci_bars(d)
        ax.errorbar(d[ok, 0], yd[ok], xerr=err, fmt="o", ms=4, color="C3", capsize=3, lw=1)
        ax.plot(d[~ok, 0], yd[~ok], "o", ms=4, mfc="none", color="C3")  # one common seed: no interval
        ax.axvline(0, color="k", lw=0.8)
        ax.set_yticks(yd, [method_label(*k) for k, _ in diffs[::-1]], fontsize=7)
        ax.set(xlabel=f"paired difference from {method_label(*ref)} (points, 95 % CI)", ylim=(-0.7, len(diffs) - 0.3))
    if task:
        fig.suptitle(task, fontsize=9)
    return save_figure(fig, path)


def density_figure(n_real: list[int], values: list[list[float]], norms: list[float], path: str | Path,
                   title: str | None = None) -> Path:
    """Accuracy (%, mean and 95 % CI over seeds) and the mean artifact norm against the number of real
    images forming the manifold (log x): a denser manifold puts x* nearer to x_G, and the two panels
    show whether the smaller artifacts still tell the models apart."""
    from .metrics import mean_ci

    n = np.asarray(n_real, np.float64)
    stats = 100 * np.array([mean_ci(v) for v in values]).reshape(-1, 3)
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.5, 3.0))
    left.plot(n, stats[:, 0], marker="o", ms=3)
    ok, err = _ci_bars(stats)
    left.errorbar(n[ok], stats[ok, 0], yerr=err, fmt="none", ecolor="C0", capsize=3, lw=1)
    right.plot(n, norms, marker="o", ms=3, color="C1")
    for ax, label in ((left, "accuracy (%): mean and 95 % CI"), (right, "mean ‖a‖")):
        ax.set(xscale="log", xlabel="real images in the manifold", ylabel=label)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def theory_figure(models: list[str], d_p95: list[float], precision: list[float], recall: list[float],
                  path: str | Path, title: str | None = None) -> Path:
    """Each model's d_FPT (p95 of its artifact norms) against its k-NN precision and recall, points
    labelled: App. A predicts d_FPT → 0 as precision → 1, so the left panel should fall to the right."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4), sharey=True)
    for ax, x, name in ((axes[0], precision, "precision"), (axes[1], recall, "recall")):
        ax.scatter(x, d_p95, s=14)
        for m, xi, yi in zip(models, x, d_p95, strict=True):
            ax.annotate(m, (xi, yi), xytext=(3, 3), textcoords="offset points", fontsize=6)
        ax.set(xlabel=f"k-NN {name}", xlim=(-0.03, 1.03))
    axes[0].set_ylabel("d_FPT (p95 of ‖a‖)")
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)
