"""Where the pipeline's independent work runs: in this process (``local``, the default) or on Ray.

Three kinds of work can leave the driver, and an executor offers one verb for each:

- ``embed(source, space, chunks)``: decode and embed ranges of an image set, yielded in order
  (real sets for the embedding cache, generated sets for artifacts);
- ``knn(base, ...)``: an exact k-NN index over the real embeddings (``search.ExactKNN`` here; on Ray,
  shards of the base held by actors, whose exact top-k merge to the same answer);
- ``map(fn, items, shared)``: independent tasks such as the fits of seeds × methods, results in order.

Everything else (the embedding cache, the artifact store's shards, reports) is written by the
driver with the same atomic, resumable protocol whatever the executor, so a run cut off on a
cluster resumes there or locally. ``using(executor)`` makes an executor the current one for a
block, as ``joblib.parallel_backend`` does for scikit-learn; ``Manifold`` and ``evaluate`` take
the current one unless given another. The Ray executor is ``manifpt.ray_executor.RayExecutor``
(``pip install manifpt[ray]``); nothing here imports Ray.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from .data import ImageSource, pixel_digests
from .progress import STAGES, progress

if TYPE_CHECKING:
    from .spaces.base import Space


@dataclass
class Embedded:
    """Rows ``lo:hi`` of a source: their embeddings, pixel digests and (when asked for) the images."""

    lo: int
    hi: int
    emb: np.ndarray
    digests: np.ndarray
    images: np.ndarray | None = None


class KNNIndex(Protocol):
    """What the manifold needs of an index: exact k-NN over the real embeddings it was built on."""

    def search(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]: ...


class Executor(Protocol):
    name: str
    workers: int

    def embed(self, source: ImageSource, space: Space, chunks: Sequence[tuple[int, int]],
              keep_images: bool = False) -> Iterator[Embedded]: ...
    def knn(self, base: np.ndarray, *, backend: str, query_chunk: int, memory_budget: int | None = None,
            path: str | None = None) -> KNNIndex: ...
    def map(self, fn: Callable[[Any, Any], Any], items: Sequence[Any], shared: Any = None,
            desc: str = "") -> list[Any]: ...


def embed_chunk(source: ImageSource, space: Space, lo: int, hi: int, keep_images: bool) -> Embedded:
    """Decode and embed ``source[lo:hi]``: the unit of work of every executor."""
    imgs = source.load(np.arange(lo, hi))
    with STAGES("embed", len(imgs)):
        emb = space.embed(imgs)
    return Embedded(lo, hi, emb, pixel_digests(imgs), imgs if keep_images else None)


@dataclass
class LocalExecutor:
    """Everything in this process, one item after another (the default; needs nothing installed)."""

    name: ClassVar[str] = "local"
    workers: int = 1

    def embed(self, source: ImageSource, space: Space, chunks: Sequence[tuple[int, int]],
              keep_images: bool = False) -> Iterator[Embedded]:
        for lo, hi in chunks:
            yield embed_chunk(source, space, lo, hi, keep_images)

    def knn(self, base: np.ndarray, *, backend: str, query_chunk: int, memory_budget: int | None = None,
            path: str | None = None) -> KNNIndex:
        from .search import ExactKNN

        return ExactKNN(backend, query_chunk=query_chunk, memory_budget=memory_budget).fit(base)

    def map(self, fn: Callable[[Any, Any], Any], items: Sequence[Any], shared: Any = None,
            desc: str = "") -> list[Any]:
        return [fn(shared, item) for item in progress(items, desc=desc, disable=not desc)]


_CURRENT: ContextVar[Executor | None] = ContextVar("manifpt_executor", default=None)


def current() -> Executor:
    """The executor set by the innermost ``using`` block, else a ``LocalExecutor``."""
    return _CURRENT.get() or LocalExecutor()


@contextmanager
def using(executor: Executor) -> Iterator[Executor]:
    """Make ``executor`` the current one inside the block."""
    token = _CURRENT.set(executor)
    try:
        yield executor
    finally:
        _CURRENT.reset(token)
