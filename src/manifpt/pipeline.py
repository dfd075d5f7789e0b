"""Folder-to-result compositions of the stages, shared by the CLI and the experiments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .data import GeneratedSet, ImageSet, match_channels
from .manifold import Manifold
from .spaces import get_space
from .store import ArtifactStore, compute_artifacts


def open_sets(real: str | Path, generated: str | Path, size: int | None = None,
              show_progress: bool = True) -> tuple[ImageSet, GeneratedSet]:
    """Scan a real folder and a generated folder and give them a common channel count."""
    real_set = ImageSet.from_folder(real, size=size, show_progress=show_progress)
    gen = GeneratedSet.from_folder(generated, size=size, show_progress=show_progress)
    if gen.images.shape[:2] != real_set.shape[:2]:
        raise ValueError(f"real images are {real_set.shape[1]}x{real_set.shape[0]} but generated images are "
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
