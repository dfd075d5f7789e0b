"""`manifpt zoo ...`: build manifpt's generative-model zoo (a thin Typer shell over ``build_zoo``).

Register with ``app.add_typer(zoo_app, name="zoo")`` (``from manifpt.zoo.cli import zoo_app``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

zoo_app = typer.Typer(help="Train manifpt's own generative models and sample them (the offline benchmark).",
                      no_args_is_help=True)
console = Console()


@zoo_app.command("build")
def build(
    out: Annotated[Path, typer.Option(help="Output folder GEN (GEN/<model>/*.png, models.yaml, ...).")],
    config: Annotated[str, typer.Option(help="Bundled config (default, quick, tiny) or a YAML file.")] = "default",
    real: Annotated[str, typer.Option(help="Real training set: a folder of images or a set name (fmnist, ...).")]
    = "fmnist",
    grids: Annotated[Path | None, typer.Option(help="Folder for sample grids (default: <out>_grids).")] = None,
    only: Annotated[list[str] | None, typer.Option(help="Build only this model (repeatable).")] = None,
    workers: Annotated[int | None, typer.Option(help="Parallel CPU workers (default: config; 0 = per core).")]
    = None,
    device: Annotated[str | None, typer.Option(help="torch device (default: cuda if present, else cpu).")] = None,
    retrain: Annotated[bool, typer.Option(help="Train even the models whose exact build ships with manifpt.")]
    = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Train every model of CONFIG on REAL (resumable), sample to OUT/<model>/, write models.yaml."""
    from .build import build_zoo

    res = build_zoo(config, real, out, device=device, show_progress=not quiet, grids_dir=grids, only=only,
                    workers=workers, retrain=retrain)
    t = Table(title=f"{out}: {len(res.models)} models (grids in {res.grids})")
    for col in ("model", "family", "upsampling", "loss", "norm", "last_nl", "train_data", "train s", "FD"):
        t.add_column(col, justify="right" if col in ("train s", "FD") else "left")
    fds = (res.quality or {}).get("models", {})
    for name, m in res.models.items():
        t.add_row(name, m["family"], m["upsampling"], m["loss"], m["norm"], m["last_nl"], m["train_data"],
                  f"{res.timings['models'][name]['train_s']:.0f}", f"{fds[name]:.2f}" if name in fds else "-")
    console.print(t)
    if res.quality:
        console.print(f"real-vs-real Fréchet distance (floor): {res.quality['real_vs_real']:.2f}")
    console.print(f"build took {res.timings['build_wall_s']:.0f} s")


@zoo_app.command("sheet")
def sheet(gen: Annotated[Path, typer.Argument(help="A built zoo (GEN/<model>/*.png, quality.json).")],
          out: Annotated[Path, typer.Option(help="PNG to write.")],
          real: Annotated[Path | None, typer.Option(help="Real image folder: adds a tile of real images.")] = None,
          per_model: Annotated[int, typer.Option(help="Samples per model.")] = 16) -> None:
    """One PNG with samples of every model (and their Fréchet distances), for READMEs and reports."""
    from ..figures import zoo_sheet

    typer.echo(zoo_sheet(gen, out, per_model, real))


@zoo_app.command("list")
def list_models(config: Annotated[str, typer.Option(help="Bundled config or YAML file.")] = "default",
                as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show the models a config builds (after train-data expansion) and their steps."""
    from .config import load_config

    specs = load_config(config).specs()
    if as_json:
        typer.echo(json.dumps([{**s.model_dump(), **s.options} for s in specs], indent=2))
        return
    for s in specs:
        opts = ", ".join(f"{k}={v}" for k, v in s.options.items())
        typer.echo(f"{s.name:32s} {s.family:9s} steps={s.steps:<6d} batch={s.batch_size:<4d} "
                   f"train_set={s.train_set} {opts}")


@zoo_app.command("configs")
def configs() -> None:
    """List the bundled configs."""
    from .config import bundled_configs

    for name in bundled_configs():
        typer.echo(name)
