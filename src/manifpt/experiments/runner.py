"""`manifpt experiment NAME|all`: run studies, write results.json + report.md/html, print the table."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import time
from pathlib import Path
from typing import Any

from ..cache import write_json
from ..errors import UnknownNameError
from ..report import Section, accuracy_sections, results_table, write_report
from .config import ExperimentConfig
from .context import Context
from .studies import STUDIES

ORDER = ("model-type", "train-data", "layer-type", "cross-dataset", "figures", "theory", "density", "projection",
         "openset", "robustness", "learner-input")


def run_experiments(names: list[str], cfg: ExperimentConfig, out: str | Path, data_root: str | Path, *,
                    device: str | None = None, show_progress: bool = True, retrain: bool = False) -> dict[str, Any]:
    """Run the named studies (``all`` = every one) sharing one prepared data root (``retrain``: train
    zoo models even where their exact build ships with manifpt)."""
    if names == ["all"]:
        names = list(ORDER)
    unknown = sorted(set(names) - set(STUDIES))
    if unknown:
        raise UnknownNameError("experiment", unknown[0], [*ORDER, "all"])
    out = Path(out)
    ctx = Context(cfg, Path(data_root), out, show_progress, device, retrain)
    t_start = time.perf_counter()
    for name in cfg.datasets:  # prepare data first so its time is reported on its own
        ctx.dataset(name)
    all_rows: list[dict[str, Any]] = []
    all_sections: list[Section] = []
    timings: dict[str, float] = {}
    key = hashlib.sha256(json.dumps(cfg.model_dump(), sort_keys=True, default=str).encode()).hexdigest()[:16]
    resumed_names: set[str] = set()
    for name in names:
        sub = out / name
        done = _load_done(sub, key)
        if done is not None:  # finished by an earlier run of the same preset: a rerun resumes
            rows, sections, timings[name] = done
            resumed_names.add(name)
        else:
            t0 = time.perf_counter()
            rows, sections = STUDIES[name](ctx, sub)
            timings[name] = time.perf_counter() - t0
            write_json(sub / "results.json", rows)
        # the accuracy/paired figures are drawn from the rows on every run (not kept in done.json), so a
        # study finished before they existed gets them when resumed
        plots = accuracy_sections(rows, sub)
        write_report(sub, f"manifpt experiment {name} ({cfg.name})", [*sections, *plots])
        if done is None:
            write_json(sub / "done.json", {"config_key": key, "seconds": timings[name],  # written last
                                           "sections": [dataclasses.asdict(s) for s in sections]})
        all_rows += rows
        all_sections += [Section(f"{name}: {s.title}", s.text, s.tables, [f"{name}/{f}" for f in s.figures])
                         for s in (*sections, *plots)]
    meta = {"preset": cfg.name, "experiments": names, "seconds": timings, "resumed": sorted(resumed_names),
            "prepare_seconds": ctx.timings,
            "total_seconds": time.perf_counter() - t_start,
            "study_seconds_total": sum(timings.values()), "machine": platform.platform(),
            "processor": platform.processor(), "cpus": __import__("os").cpu_count(),
            "config": cfg.model_dump()}
    write_json(out / "results.json", all_rows)
    write_json(out / "run.json", meta)
    if len(names) > 1:
        resumed = [n for n in names if n in resumed_names]
        head = Section("Run", f"preset {cfg.name}; wall time {meta['total_seconds'] / 60:.1f} min (data preparation "
                              f"{sum(ctx.timings.values()) / 60:.1f} min) on {meta['machine']}, "
                              f"{meta['cpus']} CPUs; studies {meta['study_seconds_total'] / 60:.1f} min in all"
                              + (f" ({', '.join(resumed)} finished by an earlier run)." if resumed else "."))
        write_report(out, f"manifpt experiment all ({cfg.name})", [head, *all_sections])
    return {"rows": all_rows, "meta": meta, "table": results_table(all_rows)}


def _load_done(sub: Path, key: str) -> tuple[list[dict[str, Any]], list[Section], float] | None:
    """Rows, sections and seconds of a study finished with the same config, else None.

    ``done.json`` is written after the study's results and report, so its presence means the study
    completed; a different preset (config key) reruns it."""
    try:
        done = json.loads((sub / "done.json").read_text())
        if done.get("config_key") != key:
            return None
        rows = json.loads((sub / "results.json").read_text())
    except (OSError, ValueError):
        return None
    sections = [Section(s["title"], s["text"], [(h, r) for h, r in s["tables"]], s["figures"])
                for s in done["sections"]]
    return rows, sections, float(done["seconds"])
