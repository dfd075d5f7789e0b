"""`manifpt experiment NAME|all`: run studies, write results.json + report.md/html, print the table."""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

from ..cache import write_json
from ..report import Section, results_table, write_report
from .config import ExperimentConfig
from .context import Context
from .studies import STUDIES

ORDER = ("model-type", "train-data", "layer-type", "cross-dataset", "figures", "theory", "density", "projection")


def run_experiments(names: list[str], cfg: ExperimentConfig, out: str | Path, data_root: str | Path, *,
                    device: str | None = None, show_progress: bool = True) -> dict[str, Any]:
    """Run the named studies (``all`` = every one) sharing one prepared data root."""
    if names == ["all"]:
        names = list(ORDER)
    unknown = sorted(set(names) - set(STUDIES))
    if unknown:
        raise KeyError(f"unknown experiment(s) {', '.join(unknown)}; available: {', '.join(ORDER)}, all")
    out = Path(out)
    ctx = Context(cfg, Path(data_root), out, show_progress, device)
    t_start = time.perf_counter()
    for name in cfg.datasets:  # prepare data first so its time is reported on its own
        ctx.dataset(name)
    all_rows: list[dict[str, Any]] = []
    all_sections: list[Section] = []
    timings: dict[str, float] = {}
    for name in names:
        t0 = time.perf_counter()
        sub = out / name
        rows, sections = STUDIES[name](ctx, sub)
        timings[name] = time.perf_counter() - t0
        write_json(sub / "results.json", rows)
        write_report(sub, f"manifpt experiment {name} ({cfg.name})", sections)
        all_rows += rows
        all_sections += [Section(f"{name}: {s.title}", s.text, s.tables, [f"{name}/{f}" for f in s.figures])
                         for s in sections]
    meta = {"preset": cfg.name, "experiments": names, "seconds": timings, "prepare_seconds": ctx.timings,
            "total_seconds": time.perf_counter() - t_start, "machine": platform.platform(),
            "processor": platform.processor(), "cpus": __import__("os").cpu_count(),
            "config": cfg.model_dump()}
    write_json(out / "results.json", all_rows)
    write_json(out / "run.json", meta)
    if len(names) > 1:
        head = Section("Run", f"preset {cfg.name}; wall time {meta['total_seconds'] / 60:.1f} min (data preparation "
                              f"{sum(ctx.timings.values()) / 60:.1f} min) on {meta['machine']}, "
                              f"{meta['cpus']} CPUs.")
        write_report(out, f"manifpt experiment all ({cfg.name})", [head, *all_sections])
    return {"rows": all_rows, "meta": meta, "table": results_table(all_rows)}
