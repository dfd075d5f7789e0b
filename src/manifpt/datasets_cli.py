"""`manifpt data ...`: write the offline real data sets to folders of PNGs (thin shell over ``datasets``).

Register with ``app.add_typer(data_app, name="data")`` (``from manifpt.datasets_cli import data_app``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

data_app = typer.Typer(help="Write real image sets available offline (Fashion-MNIST, photo patches) as PNG folders.",
                       no_args_is_help=True)


@data_app.command("fashion-mnist")
def fashion_mnist(
    out: Annotated[Path, typer.Option(help="Folder to write OUT/00000.png ... (+ source.json).")],
    split: Annotated[str, typer.Option(help="train, test, or a half / class group: a, b, c0-4, c5-9 "
                                            "(of the training split).")] = "train",
    n: Annotated[int | None, typer.Option(help="Seeded random subset of N images (default: all).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the subset.")] = 0,
) -> None:
    """Fashion-MNIST (28×28 gray) from the Debian package dataset-fashion-mnist (resumable)."""

    name = {"train": "fmnist", "test": "fmnist-test"}.get(split, f"fmnist-{split}")
    _prepare(name, out, n, seed)


@data_app.command("photos")
def photos(
    out: Annotated[Path, typer.Option(help="Folder to write OUT/00000.png ... (+ source.json).")],
    group: Annotated[str, typer.Option(help="all, a or b (disjoint halves of the source photographs).")] = "all",
    n: Annotated[int, typer.Option(help="Number of crops.")] = 20000,
    seed: Annotated[int, typer.Option(help="Seed of the crop positions.")] = 0,
    size: Annotated[int, typer.Option(help="Crop size: 32 or 64 (the 64 px benchmark).")] = 32,
) -> None:
    """size×size RGB crops of real photographs (scikit-image, scikit-learn, opencv-doc, mate-backgrounds)."""
    if size not in (32, 64):
        raise typer.BadParameter(f"--size must be 32 or 64, got {size}")
    base = "photos" if size == 32 else f"photos{size}"
    _prepare(base if group == "all" else f"{base}-{group}", out, n, seed)


@data_app.command("real")
def real(name: Annotated[str, typer.Argument(help="A named real set (see `manifpt data list`).")],
         out: Annotated[Path, typer.Option(help="Folder to write.")],
         n: Annotated[int | None, typer.Option(help="Seeded subset size.")] = None,
         seed: Annotated[int, typer.Option()] = 0) -> None:
    """Any named real set (fmnist, fmnist-a, photos-b, ...)."""
    _prepare(name, out, n, seed)


@data_app.command("list")
def list_sets() -> None:
    """The named real sets."""
    from .datasets import REAL_SETS

    for name in REAL_SETS:
        typer.echo(name)


def _prepare(name: str, out: Path, n: int | None, seed: int) -> None:
    from .datasets import REAL_SETS, DatasetUnavailableError, prepare_real

    if name not in REAL_SETS:
        raise typer.BadParameter(f"unknown set '{name}'; available: {', '.join(REAL_SETS)}")
    try:
        prepare_real(name, out, n=n, seed=seed)
    except DatasetUnavailableError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {name} to {out}")
