"""Folder-to-result compositions of the stages, shared by the CLI and the experiments."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .attribute import AttributorConfig
from .cache import cache_dir, hash_json
from .data import GeneratedSet, ImageSet, load_factors, match_channels
from .errors import DataError, UnknownNameError, UsageError, check_name
from .evaluate import ArrayMethod
from .learners import attributor_factory as attributor_factory
from .manifold import Manifold
from .progress import notice
from .spaces import get_space
from .store import FORMAT as STORE_FORMAT
from .store import ArtifactStore, compute_artifacts


class OverlapError(UsageError):
    """Evaluated images that are in the real set (their artifact is zero by construction)."""


def open_sets(real: str | Path, generated: str | Path, size: int | None = None,
              show_progress: bool = True, reencode: str | None = None) -> tuple[ImageSet, GeneratedSet]:
    """Scan a real folder and a generated folder and give them a common channel count (and, with
    ``reencode``, one format: ``ImageSet.reencode``)."""
    real_set = ImageSet.from_folder(real, size=size, show_progress=show_progress, reencode=reencode)
    gen = GeneratedSet.from_folder(generated, size=size, show_progress=show_progress, reencode=reencode)
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


# --------------------------------------------------------------------------- artifacts, attributors


def artifact_store(real_set: ImageSet, gen: GeneratedSet, space: str, space_options: dict[str, Any] | None = None,
                   backend: str = "auto", size: int | None = None, show_progress: bool = True,
                   projection: str = "nn1",
                   projection_options: dict[str, Any] | None = None) -> tuple[ArtifactStore, Manifold]:
    """Artifacts of ``gen`` in ``space``, computed once and cached by the content hashes of both sets."""
    manifold = Manifold(get_space(space, **(space_options or {})), backend=backend, show_progress=show_progress,
                        projection=projection, projection_options=projection_options).fit(real_set)
    # the roots are part of the key: the store records file paths (figures, t-SNE and predict read them)
    key = hash_json({**manifold.settings(), "gen": gen.images.fingerprint(), "size": size,
                     "roots": [str(real_set.root.resolve()), str(gen.images.root.resolve())],
                     "format": STORE_FORMAT})
    root = cache_dir() / "artifacts" / key
    if (root / "manifest.json").exists():
        cached = ArtifactStore(root)
        problems = cached.problems()
        if not problems:
            return cached, manifold
        if cached.complete:
            notice(f"{root}: cached artifacts are damaged ({'; '.join(problems[:3])}); rebuilding them")
    return compute_artifacts(manifold, real_set, gen, root, show_progress=show_progress), manifold


def check_overlap(table: list[dict[str, str]], allow: bool) -> None:
    """Real images of the manifold must not be evaluated: their artifact is zero by construction.

    Identity is decided on pixels (the manifold's hash index), not on a zero distance: in SL/SSL space
    different images can share an embedding. Stores written before ``pixel_identical`` existed fall
    back to the distance.
    """
    zero = [r for r in table if (r["pixel_identical"] == "1" if "pixel_identical" in r
                                 else float(r["nn_sqdist"]) == 0.0)]
    if zero and not allow:
        ex = "; ".join(f"{r['path']} = real {r['nn_path']}" for r in zero[:5])
        raise OverlapError(f"{len(zero)} evaluated image(s) are pixel-identical to images of the real set that "
                           f"defines the manifold (e.g. {ex}); keep them disjoint or pass --allow-overlap")


def manifpt_name(projection: str) -> str:
    """Results-row method name: ``manifpt`` for the paper's nn1 artifacts, ``manifpt[<projection>]`` else."""
    return "manifpt" if projection == "nn1" else f"manifpt[{projection}]"


def manifpt_method(real_set: ImageSet, gen: GeneratedSet, keep: np.ndarray, space: str,
                   attributor: AttributorConfig, *, projection: str = "nn1",
                   space_options: dict[str, Any] | None = None, projection_options: dict[str, Any] | None = None,
                   backend: str = "auto", size: int | None = None,
                   allow_overlap: bool = False, per_space_arch: bool = False,
                   show_progress: bool = True) -> tuple[ArrayMethod, list[dict[str, str]], ArtifactStore, Manifold]:
    """ManiFPT in one space: the artifacts of the generated images ``keep`` (cached, checked for overlap
    with the real set) and their attributor. ``per_space_arch``: ``attributor.arch`` is a run-wide
    choice for image-shaped artifacts, vector ones get the default head (``arch_for``).

    Returns (method, the store's table rows of ``keep``, the store, the fitted manifold)."""
    from .nn.nets import arch_for

    store, manifold = artifact_store(real_set, gen, space, space_options, backend, size, show_progress, projection,
                                     projection_options)
    table = store.table()
    check_overlap(table, allow_overlap)
    shape = tuple(store.manifest["artifact_shape"]) or None
    if per_space_arch:
        attributor = attributor.model_copy(update={"arch": arch_for(attributor.arch, shape)})
    method = ArrayMethod(manifpt_name(projection), space, store.artifacts(keep), shape,
                         attributor_factory(attributor, shape, manifold.space.positional, show_progress))
    return method, [table[i] for i in keep], store, manifold


# --------------------------------------------------------------------------- checks before any work


def check_run(real: str | Path, generated: str | Path, out: str | Path | None, target: str, seeds: Sequence[int],
              spaces: Iterable[str] = (), projections: Iterable[str] = (), methods: Iterable[str] = ()) -> None:
    """Every argument of a fit or compare run, checked before any image is read."""
    check_names(spaces, projections, methods)
    check_paths(real, generated, out)
    check_target(generated, target)
    check_seeds(seeds)


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


def image_groups(gen: GeneratedSet, group_by: str, target: str) -> list[str]:
    """Each generated image's group for a group-aware split (``splits.group_split``).

    ``group_by``: ``model`` or a models.yaml factor column (a per-model group: with a factor target,
    the test models are then unseen ones), or ``re:PATTERN``, a regular expression searched in each
    image's path inside its model folder (its first group, or the whole match): the source photo or
    prompt id that conditional generators share across classes, e.g. ``re:^([^_]+)_``."""
    import re

    if group_by.startswith("re:"):
        try:
            pattern = re.compile(group_by[3:])
        except re.error as e:
            raise UsageError(f"--group-by {group_by}: not a regular expression ({e})") from None
        out = []
        for rel in gen.images.rel_paths:
            inner = rel.split("/", 1)[1] if "/" in rel else rel
            m = pattern.search(inner)
            if m is None:
                raise UsageError(f"--group-by {group_by}: no match in {gen.images.root / rel}; every image "
                                 "needs a group")
            out.append(m.group(1) if pattern.groups else m.group(0))
        return out
    if group_by == target:
        raise UsageError(f"--group-by {group_by} is the target: every class would be one group, on one side of "
                         "the split; group by what the classes share (a source photo id: re:PATTERN)")
    return [str(v) for v in gen.labels(group_by)]


def shortcut_audit(real_set: ImageSet, gen: GeneratedSet, target: str, out: Path | None) -> Any:
    """``audit.audit`` of the run's files (real, and generated by ``target`` class), written to
    ``out/audit.json|md``; its warning, if any, is printed at once (also in quiet runs)."""
    from .audit import audit, write_audit

    result = audit(real_set.paths, gen.images.paths, gen.labels(target))
    if out is not None:
        write_audit(result, out)
    if result.warning:
        notice(f"warning: {result.warning}")
    return result
