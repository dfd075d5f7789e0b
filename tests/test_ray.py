"""The Ray executor on a local Ray instance: the same bytes as a local run, shards that survive ray.kill."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

ray = pytest.importorskip("ray")

from manifpt import Manifold, get_space  # noqa: E402
from manifpt.cli import app  # noqa: E402
from manifpt.compare import CompareConfig, compare_run  # noqa: E402
from manifpt.executor import using  # noqa: E402
from manifpt.ray_executor import RayExecutor, ShardedKNN  # noqa: E402
from manifpt.search import ExactKNN  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """Two CPUs, no dashboard; workers see the test session's cache and stay quiet."""
    env = {"MANIFPT_CACHE": str(tmp_path_factory.getbasetemp() / "cache"), "MANIFPT_QUIET": "1"}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    yield
    ray.shutdown()


def _base_with_ties(n: int = 1500, dim: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A base whose last third repeats its first rows (equal distances in different shards) + queries."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(n, dim)).astype(np.float32)
    base[-n // 3:] = base[:n // 3]
    queries = np.concatenate([base[:20] + 1e-3, base[n // 2:n // 2 + 20], rng.normal(size=(40, dim))])
    return base, queries.astype(np.float32)


@pytest.mark.usefixtures("cluster")
@pytest.mark.parametrize("backend", ["faiss", "pruned"])
def test_sharded_search_equals_one_machine_bit_for_bit(backend: str) -> None:
    base, q = _base_with_ties()
    for k in (1, 7):
        want = ExactKNN(backend, query_chunk=32).fit(base).search(q, k)
        got = ShardedKNN(base, 3, options={"backend": backend, "query_chunk": 32}).search(q, k)
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])
        assert got[0].dtype == np.float32 and got[1].dtype == np.int64
    # the duplicated rows tie; the lower index (first shard) wins, as with one machine
    assert (got[1][:20, 0] < len(base) // 3).all()


@pytest.mark.usefixtures("cluster")
def test_a_killed_shard_actor_restarts_and_answers_the_same() -> None:
    base, q = _base_with_ties()
    want = ExactKNN("faiss").fit(base).search(q, 3)
    index = ShardedKNN(base, 2, options={"backend": "faiss", "query_chunk": 64})
    pending = index.submit(q, 3)
    ray.kill(index.actors[1], no_restart=False)  # mid-call: Ray restarts it and retries the call
    for d, i in (index.merge(ray.get(pending), 3), index.search(q, 3)):
        np.testing.assert_array_equal(i, want[1])
        np.testing.assert_array_equal(d, want[0])


def _store_files(root: Path) -> dict[str, bytes]:
    shards = sorted(f"shards/{p.name}" for p in (root / "shards").iterdir())
    names = ["table.csv", "summary.json", "bad_files.csv", *shards]
    return {n: (root / n).read_bytes() for n in names}


@pytest.mark.usefixtures("cluster")
def test_artifacts_on_ray_are_byte_identical_to_local(folders, tmp_path: Path) -> None:
    real, gen = folders
    outs = {}
    for name, extra in (("local", []), ("ray", ["--executor", "ray", "--workers", "2"])):
        outs[name] = tmp_path / name
        r = runner.invoke(app, ["artifacts", "--real", str(real), "--generated", str(gen), "--space", "freq",
                                "--out", str(outs[name]), "--shard-size", "128", *extra, "--quiet"])
        assert r.exit_code == 0, r.output
    local, remote = _store_files(outs["local"]), _store_files(outs["ray"])
    assert len(local) == 3 + 3 * 3 and local == remote  # 300 images in 3 shards: csv, npy, json each


@pytest.mark.usefixtures("cluster")
def test_an_actor_killed_mid_run_leaves_the_output_unchanged(patches: np.ndarray) -> None:
    real, gen = patches[:600], patches[600:900]
    chunks = [(0, 100), (100, 200), (200, 300)]
    local = Manifold(get_space("rgb"), cache=False, show_progress=False).fit(real)
    want = [a for *_, a in local.iter_transform(gen, chunks)]
    m = Manifold(get_space("rgb"), cache=False, show_progress=False, executor=RayExecutor(workers=2)).fit(real)
    got = []
    for j, (*_, a) in enumerate(m.iter_transform(gen, chunks)):
        got.append(a)
        if j == 0:
            ray.kill(m.index_.actors[0], no_restart=False)
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True)) and len(got) == 3


@pytest.mark.usefixtures("cluster")
def test_compare_on_ray_gives_the_same_numbers(folders, tmp_path: Path, monkeypatch) -> None:
    real, gen = folders
    cfg = CompareConfig(real=str(real), generated=str(gen), spaces=["rgb"], methods=["durall20"], seeds=[0, 1],
                        attributor={"arch": "cifar_resnet", "depth": 1, "epochs": 2})
    monkeypatch.setenv("MANIFPT_CACHE", str(tmp_path / "cache-local"))  # each run computes its own artifacts
    local, _ = compare_run(cfg, tmp_path / "local", show_progress=False)
    monkeypatch.setenv("MANIFPT_CACHE", str(tmp_path / "cache-ray"))
    with using(RayExecutor(workers=2)):
        remote, _ = compare_run(cfg, tmp_path / "ray", show_progress=False)
    assert remote == local and len(local) >= 6
    assert json.loads((tmp_path / "ray" / "results.json").read_text()) == local


@pytest.mark.slow  # Ray Train starts a worker group (~1 min on 2 cores)
@pytest.mark.usefixtures("cluster")
def test_data_parallel_attributor_with_ray_train_matches_one_process(patches: np.ndarray) -> None:
    from manifpt.attribute import Attributor
    from manifpt.demo import PLANTED_MODELS, planted_model

    kinds = list(PLANTED_MODELS)
    gen = np.concatenate([planted_model(patches[800 + 100 * j:900 + 100 * j], k) for j, k in enumerate(kinds)])
    y = np.repeat(kinds, 100)
    X = Manifold(get_space("rgb"), cache=False, show_progress=False).fit(patches[:800]).artifacts(gen)
    tr, va = np.arange(300) % 5 != 0, np.arange(300) % 5 == 0
    # a linear probe (no batch norm, no dropout): DDP's averaged half-batch gradients are the full
    # batch's, up to rounding
    kw = {"arch": "linear", "epochs": 4, "batch_size": 32, "seed": 3, "show_progress": False, "device": "cpu"}
    one = Attributor(None, **kw).fit(X[tr], y[tr], X[va], y[va])
    two = Attributor(None, ddp_workers=2, **kw).fit(X[tr], y[tr], X[va], y[va])
    assert len(two.history_.epochs) == len(one.history_.epochs) and two.history_.best_epoch == one.history_.best_epoch
    np.testing.assert_allclose(two.predict_proba(X), one.predict_proba(X), atol=1e-4)
