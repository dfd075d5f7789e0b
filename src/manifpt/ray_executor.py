"""The Ray executor: decode + embed on Ray Data, exact search sharded over actors, fits as Ray tasks.

- **Embedding** (``embed``): the ranges to embed are a Ray Data dataset; ``map_batches`` runs a pool
  of ``workers`` embedding actors (CPU, or ``gpus_per_worker`` each for CNN spaces) that decode their
  images from the shared filesystem path of the set and return embeddings and pixel digests.
  ``preserve_order`` keeps the output in input order, so the driver writes the embedding cache and
  the artifact store exactly as a local run does (same shards, same atomic renames, same resume).
- **Search** (``knn``): ``ShardedKNN`` splits the real embeddings into ``workers`` contiguous shards;
  each actor builds the exact index of ``manifpt.search`` over its rows (read from the on-disk
  embedding cache when there is one, else from the object store). A query batch goes to every
  shard; each answers its exact top-k with float64 distances, and merging them by (distance,
  global index) gives the one-machine answer bit for bit, because the one-machine search breaks
  ties the same way and every pair's exact distance is computed from the same two rows.
- **Tasks** (``map``): one Ray task per item with ``num_cpus`` / ``num_gpus`` declared; the shared
  argument (e.g. the methods of an evaluation) is put in the object store once.

Fault tolerance: tasks are retried (``max_retries``); shard actors are restarted with their pending
calls retried (``max_restarts`` / ``max_task_retries``) and reload their shard when they restart;
Ray Data restarts its embedding actors itself.

Reproducibility and resources: CPU kernels of torch give results that depend on the thread count in
the last bits, so every task and embedding actor runs torch with ``threads`` threads (default: the
driver's count) and asks Ray for that many CPUs (a node runs as many at once as it has cores for;
oversubscribed OpenMP threads spin and slow each other several times over). With the same count and
CPU type a Ray run equals a local one; across different hardware it equals it to rounding. Shard
actors ask for no CPU (they compute only while a query batch is out; a reserved core would starve
the embedding actors of a small cluster) and for their rows' memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import ray

from .data import ImageSource
from .executor import Embedded, LocalExecutor, embed_chunk
from .progress import progress
from .search import ExactKNN, SearchStats

if TYPE_CHECKING:
    from .spaces.base import Space


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _call(fn: Callable[[Any, Any], Any], shared: Any, item: Any, threads: int | None) -> Any:
    _set_threads(threads)
    return fn(shared, item)


class _EmbedActor:
    """Ray Data callable: a batch of ranges → one row per image (index, embedding, digest[, image])."""

    def __init__(self, source: ImageSource, space: Space, keep_images: bool, threads: int | None):
        _set_threads(threads)
        self.source, self.space, self.keep = source, space, keep_images

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        parts = [embed_chunk(self.source, self.space, int(lo), int(hi), self.keep)
                 for lo, hi in zip(batch["lo"], batch["hi"], strict=True)]
        out = {"index": np.concatenate([np.arange(p.lo, p.hi) for p in parts]),
               "emb": np.concatenate([p.emb for p in parts]),
               "digest": np.concatenate([p.digests for p in parts])}
        if self.keep:
            out["image"] = np.concatenate([p.images for p in parts])
        return out


@ray.remote
class _ShardActor:
    """Rows ``lo:hi`` of the real embeddings and their exact index."""

    def __init__(self, base: Any, lo: int, hi: int, options: dict[str, Any], threads: int | None):
        _set_threads(threads)
        if isinstance(base, tuple):  # (path, n, dim): the embedding cache on the shared filesystem
            path, n, dim = base
            rows = np.memmap(path, np.float32, "r", shape=(n, dim))[lo:hi]
        else:
            rows = base
        self.lo = lo
        self.index = ExactKNN(**options).fit(rows)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        d, i = self.index.search_exact(queries, k)
        return d, i + self.lo

    def stats(self) -> SearchStats:
        return self.index.stats


class ShardedKNN:
    """Exact k-NN over a base split into contiguous shards held by Ray actors (see the module docstring)."""

    def __init__(self, base: np.ndarray, shards: int, *, options: dict[str, Any], path: str | None = None,
                 threads: int | None = None, max_restarts: int = -1):
        n, dim = base.shape
        self.n, self.shards = n, max(1, min(shards, n))
        self.bounds = np.linspace(0, n, self.shards + 1).astype(np.int64)
        # A shard holds memory, not a core: it computes only while a query batch is out, and a CPU
        # reserved for its lifetime would starve the embedding actors of small clusters. SPREAD puts
        # the shards on different nodes; ``memory`` (its rows, twice: the base and the engine's copy)
        # keeps a node from taking more shards than it can hold.
        self.actors = []
        for lo, hi in zip(self.bounds[:-1].tolist(), self.bounds[1:].tolist(), strict=True):
            rows = (path, n, dim) if path is not None else ray.put(np.ascontiguousarray(base[lo:hi]))
            actor = _ShardActor.options(num_cpus=0, memory=2 * (hi - lo) * dim * 4, scheduling_strategy="SPREAD",
                                        max_restarts=max_restarts, max_task_retries=-1)
            self.actors.append(actor.remote(rows, lo, hi, options, threads))

    def submit(self, queries: np.ndarray, k: int) -> list[ray.ObjectRef]:
        """Send a query batch to every shard (the answers are merged by ``merge``)."""
        q = ray.put(np.ascontiguousarray(queries, np.float32))
        return [a.search.remote(q, k) for a in self.actors]

    def merge(self, answers: Sequence[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-shard exact top-k → the global top-k by (distance, index), as float32 / int64."""
        d = np.concatenate([a[0] for a in answers], axis=1)
        i = np.concatenate([a[1] for a in answers], axis=1)
        order = np.lexsort((i, d), axis=1)[:, :min(k, self.n)]
        return np.take_along_axis(d, order, 1).astype(np.float32), np.take_along_axis(i, order, 1)

    def search(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Exact k nearest base points of each query: (sqdist float32 nq×k, index int64 nq×k)."""
        return self.merge(ray.get(self.submit(queries, k)), k)

    @property
    def stats(self) -> SearchStats:
        """The shards' search statistics, summed."""
        total = SearchStats()
        for s in ray.get([a.stats.remote() for a in self.actors]):
            for f in vars(total):
                setattr(total, f, getattr(total, f) + getattr(s, f))
        return total


class RayExecutor:
    """Runs the pipeline's parallel work on a Ray cluster (``address``: ``auto``, ``ray://…``, or
    ``None`` for ``$RAY_ADDRESS`` or a new local instance)."""

    name: ClassVar[str] = "ray"

    def __init__(self, address: str | None = None, workers: int = 2, *, threads: int | None = None,
                 gpus_per_worker: float = 0.0, max_retries: int = 3):
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        if threads is None:
            import torch

            threads = torch.get_num_threads()
        self.workers, self.threads, self.gpus, self.max_retries = max(1, workers), threads, gpus_per_worker, max_retries
        #: data-parallel workers of each attributor fit: the cluster's GPUs (up to ``workers``) when it
        #: has at least two, else 1 (a CPU fit is faster alone than split over gloo)
        gpus = int(ray.cluster_resources().get("GPU", 0))
        self.ddp_workers = min(self.workers, gpus) if gpus >= 2 else 1

    def embed(self, source: ImageSource, space: Space, chunks: Sequence[tuple[int, int]],
              keep_images: bool = False) -> Iterator[Embedded]:
        if not chunks:
            return
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # the driver writes the rows in input order
        ctx.enable_progress_bars = ctx.print_on_execution_start = False  # manifpt shows its own progress
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        ds = ray.data.from_items([{"lo": lo, "hi": hi} for lo, hi in chunks], override_num_blocks=len(chunks))
        ds = ds.map_batches(_EmbedActor, batch_size=1, batch_format="numpy",
                            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=self.workers),
                            num_cpus=self.threads, num_gpus=self.gpus,
                            fn_constructor_kwargs={"source": source, "space": space, "keep_images": keep_images,
                                                   "threads": self.threads})
        sizes = iter([hi - lo for lo, hi in chunks])
        want = next(sizes)
        got: list[dict[str, np.ndarray]] = []
        have = 0
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=self.workers):
            got.append(batch)
            have += len(batch["index"])
            while want is not None and have >= want:  # re-cut the stream into the requested ranges
                cat = {k: np.concatenate([b[k] for b in got]) for k in got[0]}
                part = {k: v[:want] for k, v in cat.items()}
                rest = {k: v[want:] for k, v in cat.items()}
                lo = int(part["index"][0])
                if int(part["index"][-1]) != lo + want - 1:
                    raise RuntimeError(f"Ray Data returned rows out of order at {lo}")
                yield Embedded(lo, lo + want, part["emb"], part["digest"], part.get("image"))
                got, have = ([rest] if len(rest["index"]) else []), len(rest["index"])
                want = next(sizes, None)

    def knn(self, base: np.ndarray, *, backend: str, query_chunk: int, memory_budget: int | None = None,
            path: str | None = None) -> ShardedKNN:
        options = {"backend": backend, "query_chunk": query_chunk, "memory_budget": memory_budget}
        return ShardedKNN(base, self.workers, options=options, path=path, threads=self.threads)

    def map(self, fn: Callable[[Any, Any], Any], items: Sequence[Any], shared: Any = None,
            desc: str = "") -> list[Any]:
        if self.ddp_workers > 1:
            # the fits are data-parallel themselves (a Ray Train worker group over the GPUs); as tasks
            # too they would nest a worker group inside a task that holds GPUs it needs
            return LocalExecutor().map(fn, items, shared, desc)
        task = ray.remote(_call).options(num_cpus=self.threads, num_gpus=self.gpus, max_retries=self.max_retries)
        ref = ray.put(shared)
        futures = [task.remote(fn, ref, item, self.threads) for item in items]
        pending = list(futures)
        with progress(total=len(futures), desc=desc, disable=not desc) as bar:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                bar.update(len(done))
        return ray.get(futures)


def ddp_fit(build: Callable[[], Any], X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None,
            y_val: np.ndarray | None, *, config: Any, transform: Callable[..., Any], seed: int, workers: int,
            use_gpu: bool) -> tuple[dict[str, Any], Any]:
    """One classifier trained data-parallel by Ray Train (``TorchTrainer``: DDP, NCCL on GPUs, gloo on
    CPUs) with ``nn.train.fit_classifier``: (the kept weights, the ``History``) from rank 0.

    Every worker builds the network after seeding with ``seed`` (identical replicas), trains on its
    share of each batch and validates on the whole validation set. The weights come back as a
    safetensors file in a Ray Train checkpoint under ``$MANIFPT_CACHE/ray-train`` (on a cluster,
    shared storage).
    """
    import json
    import tempfile
    from dataclasses import asdict
    from pathlib import Path

    import ray.train
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from safetensors.torch import load_file, save_file

    from .cache import cache_dir
    from .nn.train import History, fit_classifier
    from .runtime import seed_everything

    def loop(_: dict[str, Any]) -> None:
        ctx = ray.train.get_context()
        seed_everything(seed)
        model = build()
        device = ray.train.torch.get_device()
        hist = fit_classifier(model, X, y, X_val, y_val, config=config, transform=transform, device=device,
                              seed=seed, rank=ctx.get_world_rank(), world=ctx.get_world_size())
        metrics = {"best_epoch": hist.best_epoch}
        if ctx.get_world_rank() != 0:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                      str(Path(tmp) / "model.safetensors"))
            (Path(tmp) / "history.json").write_text(json.dumps(asdict(hist)))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))

    trainer = TorchTrainer(loop, scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu),
                           torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
                           run_config=RunConfig(storage_path=str(cache_dir() / "ray-train")))
    result = trainer.fit()
    with result.checkpoint.as_directory() as d:
        state = load_file(str(Path(d) / "model.safetensors"))
        history = History(**json.loads((Path(d) / "history.json").read_text()))
    return state, history
