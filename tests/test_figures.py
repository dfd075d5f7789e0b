"""The results figures (accuracy with CIs and paired differences, density curve, theory scatter) on
synthetic rows: the files are real PNGs, and what is drawn is the numbers the tables print."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy import stats

import manifpt.figures as figures
from manifpt.report import accuracy_sections, paired_table


def seeds_row(task: str, method: str, values: list[float], seeds: list[int] | None = None, space: str = "image",
              target: str = "model", metric: str = "accuracy", **extra) -> dict:
    v = np.asarray(values)
    return {"task": task, "target": target, "method": method, "space": space, "metric": metric,
            "mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n_seeds": len(v),
            "values": list(values), "seeds": seeds if seeds is not None else list(range(len(v))), **extra}


ROWS = [seeds_row("model-type:fmnist", "manifpt", [0.80, 0.84, 0.78, 0.82], space="rgb"),
        seeds_row("model-type:fmnist", "wang20", [0.70, 0.75, 0.66, 0.71], [3, 1, 2, 0]),  # other seed order
        seeds_row("model-type:fmnist", "dzanic20", [0.50, 0.52, 0.49, 0.55]),
        seeds_row("model-type:fmnist", "yu19", [0.40]),  # one seed: a bar, no interval, no paired difference
        seeds_row("model-type:fmnist", "manifpt", [0.1, 0.1], space="rgb", perturbation="jpeg:50"),
        seeds_row("model-type:fmnist", "manifpt", [0.3, 0.4], space="rgb", metric="macro_f1")]


def is_png(path: Path) -> tuple[int, int]:
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    h, w = plt.imread(path).shape[:2]
    assert h > 50 and w > 50
    return h, w


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[plt.Figure]:
    """The figures the functions hand to ``save_figure`` (still written), to read back what they show."""
    got, save = [], figures.save_figure
    monkeypatch.setattr(figures, "save_figure", lambda fig, path: (got.append(fig), save(fig, path))[1])
    return got


def segments(ax: plt.Axes) -> list[tuple[float, float]]:
    """The (low, high) ends of every error bar on an axis (horizontal or vertical)."""
    out = []
    for c in ax.containers:
        for coll in getattr(c, "lines", (None, None, ()))[2]:
            out += [tuple(sorted(s[:, 0] if s[0, 1] == s[1, 1] else s[:, 1])) for s in coll.get_segments()]
    return out


def test_accuracy_figure_draws_means_t_intervals_and_the_paired_table(tmp_path: Path, drawn) -> None:
    path = figures.accuracy_figure(ROWS, tmp_path / "acc.png", task="model-type:fmnist", chance=0.25)
    is_png(path)
    bars, forest = drawn[0].axes
    # bars: the four clean accuracy rows, worst at the bottom, in percent
    assert [t.get_text() for t in bars.get_yticklabels()] == ["yu19", "dzanic20", "wang20", "ManiFPT-RGB"]
    assert [p.get_width() for p in bars.patches] == pytest.approx([40, 51.5, 70.5, 81])
    # 95 % t intervals of the per-seed values for the three multi-seed methods, none for the single seed
    ref = [100 * np.array(stats.t.interval(0.95, 3, loc=np.mean(r["values"]), scale=stats.sem(r["values"])))
           for r in (ROWS[2], ROWS[1], ROWS[0])]
    assert np.array(segments(bars)) == pytest.approx(np.array(ref))
    assert any(line.get_linestyle() == "--" and line.get_xdata()[0] == 25 for line in bars.get_lines())
    # forest: every multi-seed method minus the best, on common seeds: exactly paired_table's numbers
    header, body = paired_table(ROWS)
    assert header[0] == "method − ManiFPT-RGB"
    assert [t.get_text() for t in forest.get_yticklabels()] == [b[0] for b in body][::-1]
    points = next(line for line in forest.get_lines() if line.get_marker() == "o" and len(line.get_xdata()))
    assert [f"{x:+.1f}" for x in points.get_xdata()] == [b[1] for b in body][::-1]
    assert [f"[{lo:+.1f}, {hi:+.1f}]" for lo, hi in segments(forest)] == [b[2] for b in body][::-1]
    # wang20 − manifpt seed by seed (wang20's values listed as seeds 3, 1, 2, 0): −0.09, −0.09, −0.12, −0.12;
    # mean −0.105, sd √(0.0009 / 3), t(3) 97.5 % point 3.1824 → ±0.0276 (by position it would be ±0.0205)
    assert body[0][:3] == ["wang20", "-10.5", "[-13.3, -7.7]"]


def test_accuracy_figure_without_a_second_multi_seed_method_has_one_panel(tmp_path: Path, drawn) -> None:
    _, w_two = is_png(figures.accuracy_figure(ROWS, tmp_path / "two.png"))
    _, w_one = is_png(figures.accuracy_figure([ROWS[0], ROWS[3]], tmp_path / "one.png"))
    assert [len(f.axes) for f in drawn] == [2, 1] and w_one < w_two


def test_accuracy_sections_one_safe_file_per_task_with_two_multi_seed_methods(tmp_path: Path) -> None:
    rows = [*ROWS,
            # one method at several manifold sizes (the density study): nothing to compare
            *(seeds_row("density:fmnist", "manifpt", [0.5, 0.6], target=f"n_real={n}") for n in (100, 1000)),
            # two targets of one task, two methods each: the target goes into the name
            *(seeds_row("t:x", m, v, target=t) for t in ("model", "family") for m, v in
              (("a", [0.6, 0.7]), ("b", [0.5, 0.55])))]
    sections = accuracy_sections(rows, tmp_path, "figures", chance=0.1)
    assert [s.figures for s in sections] == [["figures/accuracy-model-type-fmnist.png"],
                                             ["figures/accuracy-t-x-model.png"], ["figures/accuracy-t-x-family.png"]]
    for s in sections:
        is_png(tmp_path / s.figures[0])
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == sorted(
        Path(s.figures[0]).name for s in sections)
    assert accuracy_sections(ROWS[3:], tmp_path / "none") == [] and not (tmp_path / "none").exists()


def test_density_and_theory_figures(tmp_path: Path, drawn) -> None:
    is_png(figures.density_figure([100, 1000, 5000], [[0.5, 0.55, 0.52], [0.6, 0.62, 0.58], [0.61]], [8.0, 6.0, 5.0],
                                  tmp_path / "density.png", "density"))
    acc, norm = drawn[0].axes
    assert acc.get_xscale() == norm.get_xscale() == "log"
    assert len(segments(acc)) == 2  # the single-seed size has no interval
    assert list(norm.get_lines()[0].get_ydata()) == [8.0, 6.0, 5.0]
    is_png(figures.theory_figure(["gan", "vae", "flow"], [50.0, 40.0, 30.0], [0.3, 0.5, 0.8], [0.2, 0.4, 0.6],
                                 tmp_path / "theory.png", "theory"))
    prec, rec = drawn[1].axes
    assert [t.get_text() for t in prec.texts] == ["gan", "vae", "flow"]
    assert prec.collections[0].get_offsets().tolist() == [[0.3, 50], [0.5, 40], [0.8, 30]]
    assert rec.collections[0].get_offsets()[:, 0].tolist() == [0.2, 0.4, 0.6]
