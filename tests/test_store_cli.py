"""`manifpt artifacts`: end to end, resumable after a kill (byte-identical), show, figure."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from manifpt.cli import app
from manifpt.store import ArtifactStore, StoreMismatchError

runner = CliRunner()


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_artifacts_cli_end_to_end(folders, tmp_path: Path) -> None:
    real, gen = folders
    out = tmp_path / "art"
    r = runner.invoke(app, ["artifacts", "--real", str(real), "--generated", str(gen), "--space", "rgb",
                            "--out", str(out), "--shard-size", "64", "--quiet"])
    assert r.exit_code == 0, r.output
    store = ArtifactStore(out)
    rows = store.table()
    assert len(rows) == 300 and store.complete
    assert set(rows[0]) >= {"path", "model", "family", "upsampling", "nn_index", "nn_path", "nn_sqdist"}
    assert {r["model"] for r in rows} == {"m_checker", "m_stripes", "m_grid"}
    art = store.artifacts()
    assert art.shape == (300, 3072)
    np.testing.assert_allclose(np.linalg.norm(art, axis=1), [float(r["artifact_norm"]) for r in rows], rtol=1e-5)
    np.testing.assert_array_equal(store.artifacts(np.array([5, 130, 299])), art[[5, 130, 299]])
    assert store.labels("upsampling")[0] == "transposed_conv"
    # the nearest real image recorded in the table is the file whose RGB embedding is nearest
    from manifpt.data import read_image

    row = rows[7]
    xg = read_image(gen / row["path"], 3).astype(np.float64) / 255
    xs = read_image(real / row["nn_path"], 3).astype(np.float64) / 255
    assert float(row["nn_sqdist"]) == pytest.approx(((xg - xs) ** 2).sum(), rel=1e-5)

    r = runner.invoke(app, ["artifacts", "show", str(out)])
    assert r.exit_code == 0 and "300 artifacts" in r.output
    r = runner.invoke(app, ["artifacts", "show", str(out), "--json"])
    summary = __import__("json").loads(r.output)
    assert summary["n"] == 300 and summary["models"]["m_checker"]["n"] == 100
    r = runner.invoke(app, ["artifacts", "figure", str(out), "--out", str(tmp_path / "fig.png")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "fig.png").stat().st_size > 10_000


def test_freq_figure_and_store_mismatch(folders, tmp_path: Path) -> None:
    real, gen = folders
    out = tmp_path / "freq"
    args = ["artifacts", "--real", str(real), "--generated", str(gen), "--out", str(out), "--quiet"]
    assert runner.invoke(app, [*args, "--space", "freq"]).exit_code == 0
    r = runner.invoke(app, ["artifacts", "figure", str(out), "--out", str(tmp_path / "f.png"), "--per-model", "1"])
    assert r.exit_code == 0
    r = runner.invoke(app, [*args, "--space", "rgb"])
    assert r.exit_code == 1 and "holds artifacts of a different run" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["--debug", *args, "--space", "rgb"])
    assert isinstance(r.exception, StoreMismatchError)


def _run(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "manifpt.cli", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_killed_then_resumed_run_is_byte_identical(folders, tmp_path: Path) -> None:
    real, gen = folders
    env = {**os.environ, "MANIFPT_CACHE": str(tmp_path / "cache"), "MANIFPT_QUIET": "1"}
    common = ["artifacts", "--real", str(real), "--generated", str(gen), "--space", "sl",
              "--space-opt", "resolution=64", "--shard-size", "25", "--quiet"]
    ref = _run([*common, "--out", str(tmp_path / "ref")], env)
    assert ref.wait(timeout=600) == 0, ref.stderr.read().decode()

    env["MANIFPT_CACHE"] = str(tmp_path / "cache2")  # the killed run starts from nothing, too
    out = tmp_path / "killed"
    proc = _run([*common, "--out", str(out)], env)
    deadline = time.time() + 600
    while not (out / "shards" / "00002.npy").exists():
        assert proc.poll() is None, "finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_done = len(list((out / "shards").glob("*.npy")))
    assert 3 <= n_done < 12 and not (out / "table.csv").exists()
    with pytest.raises(RuntimeError, match="incomplete"):
        ArtifactStore(out).table()
    resumed = _run([*common, "--out", str(out)], env)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read().decode()
    assert _files(out) == _files(tmp_path / "ref")


def test_executor_choice_errors_are_one_line(folders, tmp_path: Path, monkeypatch) -> None:
    import sys

    real, gen = folders
    args = ["artifacts", "--real", str(real), "--generated", str(gen), "--out", str(tmp_path / "a")]
    r = runner.invoke(app, [*args, "--executor", "dask"])
    assert r.exit_code != 0 and "unknown executor 'dask' (choose from: local, ray)" in r.output
    monkeypatch.setitem(sys.modules, "manifpt.ray_executor", None)  # as if Ray were not installed
    r = runner.invoke(app, [*args, "--executor", "ray"])
    assert r.exit_code != 0 and "pip install 'manifpt[ray]'" in r.output and "Traceback" not in r.output
