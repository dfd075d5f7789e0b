"""Artifact store: every generated image's artifact, label columns and nearest real neighbour, on disk.

Layout of an artifact directory::

    manifest.json        what was computed (space + settings, real/generated sets and their hashes)
    shards/00000.csv     rows of shard 0
    shards/00000.npy     float32 artifacts of shard 0
    shards/00000.json    row range and SHA-256 of both files; written last, it marks the shard complete
    table.csv            all rows (written when every shard is done)
    bad_files.csv        files skipped in either set, with the reason
    summary.json         per-model statistics
    complete.json        SHA-256 of table.csv, bad_files.csv and summary.json; written last, so it
                         marks the store complete

Shards are a fixed partition of the sorted generated file list, each written to a temporary name
and renamed, so a killed run keeps its finished shards, never reads a half-written one, and a rerun
computes only what is missing. The output is byte-identical to an uninterrupted run. A finished
piece is reused only if its bytes still match the digest recorded when it was written: a damaged
or edited shard or table is rebuilt (and the rebuild is announced), never read as valid.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .cache import atomic_write_bytes, atomic_write_text, file_digest, read_text, remove_stale_temporaries, write_json
from .data import BadFile, GeneratedSet, ImageSet
from .errors import DataError
from .manifold import Manifold
from .progress import notice, progress

BASE_COLUMNS = ["index", "path", "model"]
#: bumped when the stored columns change; part of the artifact cache key, so old stores are never reused
FORMAT = "manifpt-artifacts/3"
NN_COLUMNS = ["nn_index", "nn_path", "nn_sqdist", "artifact_norm", "pixel_identical"]


COMPLETE = "complete.json"


class StoreMismatchError(DataError):
    pass


class IncompleteStoreError(DataError, RuntimeError):
    pass


def _shard_problem(shard_dir: Path, s: int, lo: int, hi: int) -> str | None:
    """Why shard ``s`` cannot be reused (``None`` when it is complete and intact)."""
    marker = shard_dir / f"{s:05d}.json"
    if not marker.exists():
        return "not written"
    try:
        rec = json.loads(marker.read_text())
        if rec.get("rows") != [lo, hi]:
            return f"holds rows {rec.get('rows')}, expected [{lo}, {hi}]"
        for ext in ("csv", "npy"):
            f = shard_dir / f"{s:05d}.{ext}"
            if not f.exists():
                return f"{f.name} is missing"
            if file_digest(f) != rec.get(ext):
                return f"{f.name} differs from what was written (damaged or edited)"
    except (ValueError, AttributeError) as e:
        return f"unreadable marker {marker.name} ({e})"
    return None


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
    for folder in (out, shard_dir):  # writes cut off by a kill
        remove_stale_temporaries(folder)
    n = len(gen.images)
    n_shards = (n + shard_size - 1) // shard_size
    todo = []
    for s in range(n_shards):
        problem = _shard_problem(shard_dir, s, s * shard_size, min((s + 1) * shard_size, n))
        if problem is not None:
            todo.append(s)
            if problem != "not written":
                notice(f"{shard_dir}: rebuilding shard {s}: {problem}")
    bar = progress(total=n, desc=f"artifacts ({space.name})", disable=not show_progress, unit="img")
    bar.update(n - sum(min(shard_size, n - s * shard_size) for s in todo))
    with bar:
        chunks = [(s * shard_size, min((s + 1) * shard_size, n)) for s in todo]
        for lo, hi, _, proj, art in manifold.iter_transform(gen.images, chunks):
            s = lo // shard_size
            nn_i, nn_d = proj.index[:, 0], proj.sqdist[:, 0]
            norms = np.linalg.norm(art.astype(np.float64), axis=1)
            rows = []
            for j, i in enumerate(range(lo, hi)):
                m = gen.models[i]
                rows.append({"index": i, "path": gen.images.rel_paths[i], "model": m,
                             **{f: gen.factors.get(m, {}).get(f, "") for f in factors},
                             "nn_index": int(nn_i[j]), "nn_path": real.rel_paths[int(nn_i[j])],
                             "nn_sqdist": _fmt(nn_d[j]), "artifact_norm": _fmt(norms[j]),
                             "pixel_identical": int(proj.identical[j])})
            atomic_write_text(shard_dir / f"{s:05d}.csv", _csv_text(rows, columns, header=False))
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(art, np.float32), allow_pickle=False)
            atomic_write_bytes(shard_dir / f"{s:05d}.npy", buf.getvalue())
            write_json(shard_dir / f"{s:05d}.json", {"rows": [lo, hi], **{
                ext: file_digest(shard_dir / f"{s:05d}.{ext}") for ext in ("csv", "npy")}})
            bar.update(hi - lo)
    (out / COMPLETE).unlink(missing_ok=True)
    store = ArtifactStore(out)
    header = _csv_text([], columns, header=True)
    body = "".join(read_text(shard_dir / f"{s:05d}.csv") for s in range(n_shards))
    atomic_write_text(out / "table.csv", header + body)
    write_bad_files(out / "bad_files.csv", real.bad + gen.images.bad)
    write_json(out / "summary.json", store.summarise(require_complete=False))
    write_json(out / COMPLETE, {"format": FORMAT, "files": {
        f: file_digest(out / f) for f in ("table.csv", "bad_files.csv", "summary.json")}})
    return store


def write_bad_files(path: str | Path, bad: list[BadFile]) -> None:
    """``path,reason`` rows, sorted by path (file names byte for byte, see ``cache``)."""
    rows = [b.__dict__ for b in sorted(bad, key=lambda b: b.path)]
    atomic_write_text(path, _csv_text(rows, ["path", "reason"], True))


def read_bad_files(path: str | Path) -> list[BadFile]:
    path = Path(path)
    if not path.exists():
        return []
    with path.open(newline="", errors="surrogateescape") as fh:
        return [BadFile(r["path"], r["reason"]) for r in csv.DictReader(fh)]


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
        """Every piece was written (``complete.json`` exists); ``problems()`` says whether it is intact."""
        return (self.root / COMPLETE).exists()

    def problems(self) -> list[str]:
        """What is missing or damaged, checked against the digests recorded at write time (reads every file)."""
        if not self.complete:
            return ["incomplete: the run that wrote it was interrupted"]
        out = []
        try:
            rec = json.loads((self.root / COMPLETE).read_text())
            if rec.get("format") != FORMAT:
                return [f"written by another store format ({rec.get('format')})"]
            for name, digest in rec["files"].items():
                if not (self.root / name).exists() or file_digest(self.root / name) != digest:
                    out.append(f"{name} differs from what was written (damaged or edited)")
            m = self.manifest
        except (ValueError, KeyError, TypeError) as e:
            return [f"unreadable {COMPLETE} or manifest.json ({e})"]
        n, size = m["generated"]["n"], m["shard_size"]
        for s in range((n + size - 1) // size):
            problem = _shard_problem(self.root / "shards", s, s * size, min((s + 1) * size, n))
            if problem:
                out.append(f"shard {s}: {problem}")
        return out

    def _require_complete(self) -> None:
        if not self.complete:
            raise IncompleteStoreError(f"{self.root}: artifacts are incomplete (a run was interrupted); rerun "
                                       "`manifpt artifacts` with the same arguments to resume")

    def table(self, require_complete: bool = True) -> list[dict[str, str]]:
        if require_complete:
            self._require_complete()
        with (self.root / "table.csv").open(newline="", errors="surrogateescape") as fh:
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
        return read_bad_files(self.root / "bad_files.csv")

    def summarise(self, require_complete: bool = True) -> dict[str, Any]:
        rows = self.table(require_complete)
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
