"""Folder-to-result compositions of the stages, shared by the CLI and the experiments."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .data import GeneratedSet, ImageSet, load_factors, match_channels
from .errors import DataError, UnknownNameError, UsageError, check_name
from .manifold import Manifold
from .spaces import get_space
from .store import ArtifactStore, compute_artifacts


def open_sets(real: str | Path, generated: str | Path, size: int | None = None,
              show_progress: bool = True) -> tuple[ImageSet, GeneratedSet]:
    """Scan a real folder and a generated folder and give them a common channel count."""
    real_set = ImageSet.from_folder(real, size=size, show_progress=show_progress)
    gen = GeneratedSet.from_folder(generated, size=size, show_progress=show_progress)
    if gen.images.shape[:2] != real_set.shape[:2]:
        raise DataError(f"real images are {real_set.shape[1]}x{real_set.shape[0]} but generated images are "
                         f"{gen.images.shape[1]}x{gen.images.shape[0]}; pass a common size to resize both")
    real_set, gen.images = match_channels(real_set, gen.images)
    return real_set, gen


def artifacts_for_folders(real: str | Path, generated: str | Path, space: str, out: str | Path, *,
                          space_options: dict[str, Any] | None = None, size: int | None = None,
                          backend: str = "auto", shard_size: int = 2048,
                          show_progress: bool = True) -> ArtifactStore:
    """`manifpt artifacts`: scan both sets, fit the manifold on the real set, store every artifact."""
    real_set, gen = open_sets(real, generated, size, show_progress)
    sp = get_space(space, **(space_options or {}))
    manifold = Manifold(sp, backend=backend, show_progress=show_progress).fit(real_set)
    return compute_artifacts(manifold, real_set, gen, out, shard_size=shard_size, show_progress=show_progress)


# --------------------------------------------------------------------------- checks before any work


def check_paths(real: str | Path, generated: str | Path, out: str | Path | None = None) -> None:
    """Both inputs are existing, distinct, non-nested folders; ``out`` is not a file."""
    r, g = Path(real).resolve(), Path(generated).resolve()
    for flag, p in (("--real", r), ("--generated", g)):
        if not p.exists():
            raise UsageError(f"{flag} {p}: no such folder")
        if not p.is_dir():
            raise UsageError(f"{flag} {p}: not a folder")
    if r == g:
        raise UsageError(f"--real and --generated are the same folder ({r}): the real set defines the manifold, "
                         "the generated set is what is attributed; give two different folders")
    if r in g.parents or g in r.parents:
        inner, outer = (g, r) if r in g.parents else (r, g)
        raise UsageError(f"{inner} is inside {outer}: the real and the generated folders must not contain "
                         "each other (the outer scan would read the inner images too)")
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise UsageError(f"--out {out}: is a file, not a folder; choose a folder path")


def check_target(generated: str | Path, target: str) -> None:
    """``target`` is ``model`` or a factor column of the generated folder's models.yaml / models.csv."""
    if target != "model":
        names = sorted({k for f in load_factors(generated).values() for k in f})
        if target not in names:
            raise UnknownNameError("target", target, ["model", *names])


def check_names(spaces: Iterable[str] = (), projections: Iterable[str] = (), methods: Iterable[str] = ()) -> None:
    """Every space, projection and baseline name is registered (before any image is read)."""
    from .baselines import list_baselines
    from .projection import list_projectors
    from .spaces import list_spaces

    for kind, names, known in (("space", spaces, list_spaces()), ("projection", projections, list_projectors()),
                               ("baseline", methods, list_baselines())):
        for n in names:
            check_name(kind, n, known)


def check_seeds(seeds: Sequence[int]) -> None:
    if not len(seeds):
        raise UsageError("no seeds: --seeds must be at least 1")


def check_labels(labels: Sequence[str] | np.ndarray, target: str) -> None:
    """At least two classes and at least 3 images in each (one for each of train / validation / test)."""
    counts = Counter(np.asarray(labels).astype(str).tolist())
    if len(counts) < 2:
        only = next(iter(counts), "none")
        raise UsageError(f"{target}: only one class ({only}); attribution needs at least two "
                         f"{'model folders' if target == 'model' else 'values'}")
    small = sorted((n, c) for c, n in counts.items() if n < 3)
    if small:
        n, c = small[0]
        more = f" ({len(small)} classes are too small)" if len(small) > 1 else ""
        raise UsageError(f"class '{c}' of {target} has {n} usable image(s); every class needs at least 3 (one each "
                         f"for training, validation and test){more}")
