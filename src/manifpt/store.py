"""Artifact store: every generated image's artifact, label columns and nearest real neighbour, on disk.

Layout of an artifact directory::

    manifest.json        what was computed (space + settings, real/generated sets and their hashes)
    shards/00000.csv     rows of shard 0 (written before the .npy)
    shards/00000.npy     float32 artifacts of shard 0; its presence marks the shard complete
    table.csv            all rows (written when every shard is done)
    bad_files.csv        files skipped in either set, with the reason
    summary.json         per-model statistics; written last, so it marks the store complete

Shards are a fixed partition of the sorted generated file list, each written to a temporary name
and renamed, so a killed run keeps its finished shards, never reads a half-written one, and a rerun
computes only what is missing. The output is byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .cache import atomic_write_bytes, atomic_write_text, write_json
from .data import BadFile, GeneratedSet, ImageSet
from .manifold import Manifold
from .progress import progress

BASE_COLUMNS = ["index", "path", "model"]
#: bumped when the stored columns change; part of the artifact cache key, so old stores are never reused
FORMAT = "manifpt-artifacts/2"
NN_COLUMNS = ["nn_index", "nn_path", "nn_sqdist", "artifact_norm", "pixel_identical"]


class StoreMismatchError(ValueError):
    pass


def _csv_text(rows: list[dict[str, Any]], columns: list[str], header: bool) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, columns, lineterminator="\n", extrasaction="ignore")
    if header:
        w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _fmt(x: float) -> str:
    return repr(float(x))


def compute_artifacts(manifold: Manifold, real: ImageSet, gen: GeneratedSet, out: str | Path, *,
                      shard_size: int = 2048, show_progress: bool = True,
                      extra_manifest: dict[str, Any] | None = None) -> ArtifactStore:
    """Compute and store artifacts of every generated image (resumable). ``manifold`` must be fitted."""
    out = Path(out)
    factors = gen.factor_names()
    columns = BASE_COLUMNS + factors + NN_COLUMNS
    space = manifold.space
    manifest = {
        "format": FORMAT,
        "space": space.name,
        "space_settings": space.settings(),
        "projection": manifold.projector_.settings(),
        "image_shape": list(gen.images.shape),
        "artifact_shape": list(space.artifact_shape(gen.images.shape) or []),
        "dim": int(manifold.embeddings_.shape[1]),
        "real": {"root": str(real.root), "fingerprint": real.fingerprint(), "n": len(real),
                 "resize": real.resize},
        "generated": {"root": str(gen.images.root), "fingerprint": gen.images.fingerprint(),
                      "n": len(gen.images), "resize": gen.images.resize},
        "models": gen.model_names,
        "factors": {m: gen.factors.get(m, {}) for m in gen.model_names},
        "columns": columns,
        "shard_size": shard_size,
        **(extra_manifest or {}),
    }
    man_path = out / "manifest.json"
    if man_path.exists():
        old = json.loads(man_path.read_text())
        if old != json.loads(json.dumps(manifest, default=str)):
            diff = sorted(k for k in set(old) | set(manifest) if old.get(k) != json.loads(
                json.dumps(manifest.get(k), default=str)))
            raise StoreMismatchError(f"{out} holds artifacts of a different run (differs in: {', '.join(diff)}); "
                                     "use another --out or delete it")
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_json(man_path, manifest)
    shard_dir = out / "shards"
    shard_dir.mkdir(exist_ok=True)
    for stale in shard_dir.glob(".*.tmp*"):  # a write cut off by a kill
        stale.unlink()
    n = len(gen.images)
    n_shards = (n + shard_size - 1) // shard_size
    todo = [s for s in range(n_shards) if not (shard_dir / f"{s:05d}.npy").exists()]
    bar = progress(total=n, desc=f"artifacts ({space.name})", disable=not show_progress, unit="img")
    bar.update(n - sum(min(shard_size, n - s * shard_size) for s in todo))
    with bar:
        for s in todo:
            lo, hi = s * shard_size, min((s + 1) * shard_size, n)
            _, proj, art = manifold.transform(gen.images.subset(np.arange(lo, hi)))
            norms = np.linalg.norm(art.astype(np.float64), axis=1)
            rows = []
            for j, i in enumerate(range(lo, hi)):
                m = gen.models[i]
                rows.append({"index": i, "path": gen.images.rel_paths[i], "model": m,
                             **{f: gen.factors.get(m, {}).get(f, "") for f in factors},
                             "nn_index": int(proj.index[j]), "nn_path": real.rel_paths[int(proj.index[j])],
                             "nn_sqdist": _fmt(proj.sqdist[j]), "artifact_norm": _fmt(norms[j]),
                             "pixel_identical": int(proj.identical[j])})
            atomic_write_text(shard_dir / f"{s:05d}.csv", _csv_text(rows, columns, header=False))
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(art, np.float32), allow_pickle=False)
            atomic_write_bytes(shard_dir / f"{s:05d}.npy", buf.getvalue())
            bar.update(hi - lo)
    store = ArtifactStore(out)
    header = _csv_text([], columns, header=True)
    body = "".join((shard_dir / f"{s:05d}.csv").read_text() for s in range(n_shards))
    atomic_write_text(out / "table.csv", header + body)
    bad = sorted(real.bad + gen.images.bad, key=lambda b: b.path)
    atomic_write_text(out / "bad_files.csv", _csv_text([b.__dict__ for b in bad], ["path", "reason"], True))
    write_json(out / "summary.json", store.summarise())
    return store


@dataclass
class ArtifactStore:
    """Read access to a finished artifact directory."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not (self.root / "manifest.json").exists():
            raise FileNotFoundError(f"{self.root}: not an artifact directory (no manifest.json)")

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.root / "manifest.json").read_text())

    @property
    def complete(self) -> bool:
        return (self.root / "summary.json").exists()

    def _require_complete(self) -> None:
        if not (self.root / "table.csv").exists():
            raise RuntimeError(f"{self.root}: artifacts are incomplete (a run was interrupted); rerun "
                               "`manifpt artifacts` with the same arguments to resume")

    def table(self) -> list[dict[str, str]]:
        self._require_complete()
        with (self.root / "table.csv").open(newline="") as fh:
            return list(csv.DictReader(fh))

    def artifacts(self, rows: np.ndarray | None = None) -> np.ndarray:
        """float32 N×D artifacts (all, or the given row indices)."""
        self._require_complete()
        m = self.manifest
        shards = sorted((self.root / "shards").glob("*.npy"))
        arrays = [np.load(p, mmap_mode="r") for p in shards]
        if rows is None:
            return np.concatenate(arrays) if arrays else np.zeros((0, m["dim"]), np.float32)
        rows = np.asarray(rows, np.int64)
        size = m["shard_size"]
        out = np.empty((len(rows), m["dim"]), np.float32)
        for s in np.unique(rows // size):
            sel = np.flatnonzero(rows // size == s)
            out[sel] = arrays[s][rows[sel] - s * size]
        return out

    def labels(self, target: str = "model") -> list[str]:
        rows = self.table()
        if rows and target not in rows[0]:
            raise KeyError(f"no column '{target}' in {self.root}/table.csv (have: {', '.join(rows[0])})")
        return [r[target] for r in rows]

    def bad_files(self) -> list[BadFile]:
        p = self.root / "bad_files.csv"
        if not p.exists():
            return []
        with p.open(newline="") as fh:
            return [BadFile(r["path"], r["reason"]) for r in csv.DictReader(fh)]

    def summarise(self) -> dict[str, Any]:
        rows = self.table()
        per: dict[str, dict[str, Any]] = {}
        for model in sorted({r["model"] for r in rows}):
            sel = [r for r in rows if r["model"] == model]
            norms = np.array([float(r["artifact_norm"]) for r in sel])
            dist = np.array([float(r["nn_sqdist"]) for r in sel])
            per[model] = {"n": len(sel), "artifact_norm_mean": float(norms.mean()),
                          "artifact_norm_median": float(np.median(norms)),
                          "artifact_norm_p95": float(np.percentile(norms, 95)),
                          "artifact_norm_max": float(norms.max()), "nn_sqdist_mean": float(dist.mean()),
                          "distinct_nn": len({r["nn_index"] for r in sel}),
                          "zero_artifacts": int((norms == 0).sum())}
        m = self.manifest
        return {"space": m["space"], "n": len(rows), "dim": m["dim"], "models": per,
                "bad_files": len(self.bad_files())}
