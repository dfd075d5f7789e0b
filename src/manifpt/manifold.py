"""The estimated data manifold: real images embedded in a space, with exact nearest-point projection.

``Manifold(space).fit(real)`` embeds the real set (streamed in batches, stored on disk as a raw
float32 file keyed by the real set's content hash and the space's settings, resumable) and builds
an exact k-NN index (``search.ExactKNN``): over the memory-mapped file when the search fits the
memory budget, else out of core over rows read on demand (``cache.DiskRows``). ``project`` returns
each image's nearest real sample; ``artifacts`` returns ``embed(x_G) − embed(x*)`` (paper Sec. 2.2).

A query image whose pixels are byte-identical to a real image takes that image's stored
embedding, so real images in the real set have exactly zero artifact in every space, even where a
CNN's float arithmetic depends on batch composition.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cache import DiskRows, cache_dir, file_digest, hash_json, write_json
from .data import ImageSource, as_source, pixel_digests
from .errors import UsageError
from .executor import Executor, current
from .progress import STAGES, notice, progress
from .projection import Projector, get_projector
from .spaces.base import Space

EMB_FILE, HASH_FILE, META_FILE, DONE_FILE = "emb.f32", "pixhash.bin", "meta.json", "progress.json"
#: an in-memory search holds about this many times the embeddings' bytes (memmap pages, FAISS's centred
#: copy, norms and slack: benchmarks/scale.py peak RSS)
IN_MEMORY_FACTOR = 2.2


def parse_bytes(value: int | str) -> int:
    """``4096``, ``"512MB"``, ``"8GiB"``, ``"1.5G"`` → bytes (K/M/G/T, powers of 1024)."""
    if isinstance(value, (int, np.integer)):
        if value <= 0:
            raise UsageError(f"memory budget must be positive, got {value}")
        return int(value)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(I?B)?\s*", str(value), re.IGNORECASE)
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"memory budget '{value}' is not a size such as 512MB or 8GB")
    return int(float(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " "))


def default_memory_budget() -> int:
    """``$MANIFPT_MEMORY_BUDGET`` (e.g. ``16GB``; every command honours it), else half the machine's memory."""
    if env := os.environ.get("MANIFPT_MEMORY_BUDGET"):
        return parse_bytes(env)
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2


def embed_into(source: ImageSource, space: Space, emb: np.ndarray, hashes: np.ndarray, start: int,
               batch_size: int, executor: Executor, after_batch=None) -> None:
    """Embed ``source[start:]`` batch by batch (on ``executor``) into ``emb`` / ``hashes`` (arrays or memmaps)."""
    chunks = [(lo, min(lo + batch_size, len(source))) for lo in range(start, len(source), batch_size)]
    for part in executor.embed(source, space, chunks):
        emb[part.lo:part.hi] = part.emb
        hashes[part.lo:part.hi] = part.digests
        if after_batch is not None:
            after_batch(part.hi, part.hi - part.lo)


@dataclass
class Projection:
    """Nearest real sample(s) of each query: indices into the real set and exact squared distances."""

    index: np.ndarray  # int64 (N,) or (N, k)
    sqdist: np.ndarray  # float32, same shape
    #: bool (N,): the query's pixels are byte-identical to a real image (distance 0 alone does not say so:
    #: SL/SSL embeddings, even FREQ's phase-free spectra, can coincide for different images)
    identical: np.ndarray | None = None


class DamagedCacheError(ValueError):
    """A finished cache entry whose bytes no longer match the digests recorded when it was written."""


class EmbeddingCache:
    """A real set's embeddings on disk: ``<root>/<key>/emb.f32`` (memmap) + pixel digests + meta.

    Built under ``<key>.partial`` with a progress file updated after each flushed chunk, so a
    killed run resumes where it stopped; renamed to ``<key>`` only when complete. ``meta.json``
    records the SHA-256 of both data files; ``open`` checks them (one sequential read: SHA-256 ran at
    1.4 GB/s on the 2-core dev VM, file in page cache)
    so that a damaged entry is rebuilt instead of read (one flipped byte can turn a value into 3.4e38).
    """

    def __init__(self, root: Path, key: str, n: int, dim: int):
        self.final, self.partial = root / key, root / f"{key}.partial"
        self.n, self.dim = n, dim

    @property
    def complete(self) -> bool:
        return (self.final / META_FILE).exists()

    def open(self, mapped: bool = True) -> tuple[np.memmap | DiskRows, np.ndarray]:
        """(embeddings, pixel digests); embeddings memory-mapped, or read row by row (``mapped=False``:
        out-of-core, the resident set holds only the rows asked for)."""
        meta = json.loads((self.final / META_FILE).read_text())
        if meta["n"] != self.n or meta["dim"] != self.dim:
            raise ValueError(f"{self.final}: cache holds {meta['n']}×{meta['dim']}, expected {self.n}×{self.dim}")
        for name in (EMB_FILE, HASH_FILE):
            path = self.final / name
            want = meta.get("sha256", {}).get(name)
            if not path.exists() or path.stat().st_size != self.n * (4 * self.dim if name == EMB_FILE else 16):
                raise DamagedCacheError(f"{path}: missing or of the wrong size")
            if want is None or file_digest(path) != want:
                raise DamagedCacheError(f"{path}: content differs from what was written (damaged or edited)")
        emb = (np.memmap(self.final / EMB_FILE, np.float32, "r", shape=(self.n, self.dim)) if mapped
               else DiskRows(self.final / EMB_FILE, (self.n, self.dim)))
        hashes = np.fromfile(self.final / HASH_FILE, np.uint8).reshape(self.n, 16)
        return emb, hashes

    def build(self, source: ImageSource, space: Space, batch_size: int, meta: dict, show: bool,
              executor: Executor) -> None:
        self.partial.mkdir(parents=True, exist_ok=True)
        emb_path, hash_path, done_path = (self.partial / f for f in (EMB_FILE, HASH_FILE, DONE_FILE))
        done = 0
        if done_path.exists() and emb_path.exists() and hash_path.exists():
            done = int(json.loads(done_path.read_text())["done"])
        else:
            for p in (emb_path, hash_path):
                p.unlink(missing_ok=True)
        mode = "r+" if done > 0 else "w+"  # written with pwrite: a mapping would count in the resident set
        emb = DiskRows(emb_path, (self.n, self.dim), np.float32, mode)
        hashes = DiskRows(hash_path, (self.n, 16), np.uint8, mode)
        bar = progress(total=self.n, desc=f"embed real set ({space.name})", disable=not show, unit="img")
        bar.update(done)

        def checkpoint(done: int, n: int) -> None:
            emb.flush()
            hashes.flush()
            write_json(done_path, {"done": done})
            bar.update(n)

        with bar:
            embed_into(source, space, emb, hashes, done, batch_size, executor, checkpoint)
        emb.flush()
        hashes.flush()
        emb.close()
        hashes.close()
        digests = {name: file_digest(self.partial / name) for name in (EMB_FILE, HASH_FILE)}
        write_json(self.partial / META_FILE, {**meta, "n": self.n, "dim": self.dim, "sha256": digests})
        done_path.unlink()
        if self.final.exists():
            shutil.rmtree(self.final)
        os.replace(self.partial, self.final)


class Manifold:
    """Real images in an embedding space, with exact Euclidean projection.

    Parameters
    ----------
    space: the embedding space (``get_space(...)``).
    cache: directory for real-set embeddings; ``None`` uses ``$MANIFPT_CACHE/embeddings``;
        ``False`` keeps them in memory only.
    backend: nearest-neighbour engine, ``auto`` (torch GEMM on GPU, FAISS or the pruned search on CPU,
        see ``search``), ``faiss``, ``torch``, ``pruned``.
    memory_budget: bytes (or ``"8GB"``, ``"512MiB"``) the real set's search may hold in RAM; ``None`` is
        ``$MANIFPT_MEMORY_BUDGET`` or half the machine's memory. A cached real set whose embeddings need
        more than that (× ``IN_MEMORY_FACTOR``: the base, FAISS's copy, slack) is searched out of core:
        the embeddings stay on disk and are read row by row (``cache.DiskRows``); RAM holds the pruned
        engine's sketch (≤ ¼ of the budget) and one batch of bounds (≤ ⅒). Cost: every refined pair
        reads its row from the page cache or the disk, and where pruning does not pay (noise-like
        embeddings) the search degrades to brute force over rows read from disk.
    executor: where embedding and search run (``manifpt.executor``); ``None`` is the current one
        (local unless inside ``executor.using(...)``). Ray shards the index over actors; the answer is
        the same, bit for bit.
    """

    def __init__(self, space: Space, *, cache: str | Path | bool | None = None, backend: str = "auto",
                 batch_size: int = 512, query_chunk: int = 4096, show_progress: bool = True,
                 projection: str | Projector = "nn1", projection_options: dict | None = None,
                 memory_budget: int | str | None = None, executor: Executor | None = None):
        self.space, self.cache, self.backend, self.memory_budget = space, cache, backend, memory_budget
        self.executor = executor
        self.projection, self.projection_options = projection, projection_options
        self.batch_size, self.query_chunk, self.show_progress = batch_size, query_chunk, show_progress

    # -- fit --------------------------------------------------------------------------
    def fit(self, real: ImageSource | np.ndarray) -> Manifold:
        """Fit the space if it learns from real data (SSL), embed the real set, index it."""
        src = as_source(real)
        if len(src) == 0:
            raise ValueError("the real set is empty")
        ex = self.executor_ = self.executor or current()
        if not self.show_progress and hasattr(self.space, "show_progress"):
            self.space.show_progress = False  # a quiet run keeps the space's own training (SSL) quiet too
        with STAGES("fit space"):
            self.space.fit(src)
        self.real_ = src
        self.image_shape_ = tuple(src.shape)
        dim = self.space.dim(self.image_shape_)
        meta = {"space": self.space.name, "settings": self.space.settings(), "real": src.fingerprint(),
                "image_shape": list(self.image_shape_)}
        self.key_ = hash_json(meta)
        self.budget_ = parse_bytes(self.memory_budget) if self.memory_budget is not None else default_memory_budget()
        self.out_of_core_ = self.cache is not False and IN_MEMORY_FACTOR * len(src) * dim * 4 > self.budget_
        if self.out_of_core_ and self.backend not in ("auto", "pruned"):
            raise UsageError(f"the real set's embeddings ({len(src) * dim * 4 / 2**30:.1f} GiB) do not fit the "
                             f"memory budget ({self.budget_ / 2**30:.1f} GiB) of the '{self.backend}' engine; "
                             "use --backend auto or a larger memory budget")
        if self.cache is False:
            emb = np.empty((len(src), dim), np.float32)
            hashes = np.empty((len(src), 16), np.uint8)
            embed_into(src, self.space, emb, hashes, 0, self.batch_size, ex)
        else:
            root = Path(self.cache) if isinstance(self.cache, (str, Path)) else cache_dir() / "embeddings"
            entry = EmbeddingCache(root, self.key_, len(src), dim)
            if not entry.complete:
                entry.build(src, self.space, self.batch_size, meta, self.show_progress, ex)
            mapped = not self.out_of_core_
            try:
                emb, hashes = entry.open(mapped)
            except DamagedCacheError as e:
                notice(f"{e}; rebuilding the embedding cache")
                shutil.rmtree(entry.final)
                entry.build(src, self.space, self.batch_size, meta, self.show_progress, ex)
                emb, hashes = entry.open(mapped)
            self.cache_path_ = entry.final
        self.embeddings_ = emb
        self._hash_index = {}
        for i, h in enumerate(hashes):
            self._hash_index.setdefault(h.tobytes(), i)
        path = str(self.cache_path_ / EMB_FILE) if self.cache is not False else None
        if self.out_of_core_:
            chunk = max(1, min(self.query_chunk, self.budget_ // (40 * dim)))  # query batches ≤ ⅒ of the budget
            self.index_ = ex.knn(emb, backend="pruned", query_chunk=chunk, memory_budget=self.budget_, path=path)
        else:
            self.index_ = ex.knn(emb, backend=self.backend, query_chunk=self.query_chunk, path=path)
        p = self.projection
        self.projector_ = get_projector(p, **(self.projection_options or {})) if isinstance(p, str) else p
        self.projector_.fit(self.real_, self.show_progress)
        return self

    # -- projection -------------------------------------------------------------------
    def _check_shape(self, shape: tuple[int, ...]) -> None:
        if tuple(shape) != self.image_shape_:
            raise ValueError(f"images have shape {tuple(shape)}, the real set {self.image_shape_}")

    def embed(self, images: np.ndarray) -> np.ndarray:
        """Embed query images; pixel-identical copies of real images get the stored real embedding."""
        images = np.asarray(images)
        self._check_shape(images.shape[1:])
        with STAGES("embed", len(images)):
            emb = self.space.embed(images)
        return self._identical_to_real(emb, pixel_digests(images))[0]

    def _identical_to_real(self, emb: np.ndarray, digests: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-identical copies of real images get the stored real embedding (and are flagged)."""
        identical = np.zeros(len(emb), bool)
        for j, h in enumerate(digests):
            i = self._hash_index.get(h.tobytes())
            if i is not None:
                emb[j], identical[j] = self.embeddings_[i], True
        return emb, identical

    def project(self, images: ImageSource | np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Exact nearest real sample of each image: (index int64 (N,), squared distance float32 (N,))."""
        p = self._run(images, k)[1]
        return p.index, p.sqdist

    def artifacts(self, images: ImageSource | np.ndarray) -> np.ndarray:
        """a = embed(x_G) − x*, float32 N×D (x* = embed(nearest real image) for the default ``nn1``)."""
        return self._run(images, 1)[2]

    def transform(self, images: ImageSource | np.ndarray) -> tuple[np.ndarray, Projection, np.ndarray]:
        """(embeddings, projection, artifacts) in one pass."""
        return self._run(images, 1)

    def _run(self, images: ImageSource | np.ndarray, k: int) -> tuple[np.ndarray, Projection, np.ndarray]:
        src = as_source(images)
        n, dim = len(src), self.embeddings_.shape[1]
        kk = max(k, self.projector_.k, 1)
        embs, arts = np.empty((n, dim), np.float32), np.empty((n, dim), np.float32)
        idx, dist, same = np.empty((n, kk), np.int64), np.empty((n, kk), np.float32), np.zeros(n, bool)
        chunks = [(lo, min(lo + self.query_chunk, n)) for lo in range(0, n, self.query_chunk)]
        for lo, hi, e, p, a in self.iter_transform(src, chunks, kk):
            embs[lo:hi], idx[lo:hi], dist[lo:hi], same[lo:hi], arts[lo:hi] = e, p.index, p.sqdist, p.identical, a
        proj = Projection(idx[:, 0], dist[:, 0], same) if k == 1 else Projection(idx[:, :k], dist[:, :k], same)
        return embs, proj, arts

    def iter_transform(self, images: ImageSource | np.ndarray, chunks: list[tuple[int, int]], k: int = 1,
                       ) -> Iterator[tuple[int, int, np.ndarray, Projection, np.ndarray]]:
        """``(lo, hi, embeddings, projection (k columns), artifacts)`` of each range of ``images``, in
        order; the executor embeds the ranges in parallel while the driver searches and projects."""
        src = as_source(images)
        self._check_shape(src.shape)
        kk = max(k, self.projector_.k, 1)
        for part in self.executor_.embed(src, self.space, chunks, keep_images=True):
            e, ident = self._identical_to_real(part.emb, part.digests)
            d, i = self.index_.search(e, kk)
            a = e - self.projector_.project(e, part.images, i[:, :max(self.projector_.k, 1)], d, self.embeddings_,
                                            self.space.embed)
            yield part.lo, part.hi, e, Projection(i, d, ident), a

    def settings(self) -> dict:
        """What determines this manifold's artifacts (cache key material)."""
        return {"space": self.space.name, "space_settings": self.space.settings(), "real": self.real_.fingerprint(),
                "projection": self.projector_.settings()}

    def real_path(self, index: int) -> str:
        """Path of real sample ``index`` (or ``'#index'`` for in-memory real sets). One path, not the
        set's list of them: ``predict`` asks for one per image, and the list has every real image."""
        rel = getattr(self.real_, "rel_paths", None)
        return str(self.real_.root / rel[index]) if rel is not None else f"#{index}"
