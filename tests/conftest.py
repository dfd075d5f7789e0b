"""Shared fixtures: an isolated cache per test session, real photo patches, folder builders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from manifpt.datasets import photo_patches
from manifpt.demo import plant

# One intra-op thread: the suite's networks are tiny, and oversubscribed OpenMP threads on a shared
# 2-core runner are far slower than one thread.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MANIFPT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("MANIFPT_QUIET", "1")


@pytest.fixture(scope="session")
def patches() -> np.ndarray:
    """1,500 real 32×32 RGB photo patches (scikit-image / scikit-learn photos)."""
    return photo_patches(1500, 32, seed=0)


def write_images(folder: Path, images: np.ndarray, prefix: str = "img") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, im in enumerate(images):
        p = folder / f"{prefix}{i:05d}.png"
        Image.fromarray(im).save(p)
        paths.append(p)
    return paths


@pytest.fixture(scope="session")
def folders(tmp_path_factory: pytest.TempPathFactory, patches: np.ndarray) -> tuple[Path, Path]:
    """REAL/ (1,000 patches) and GENERATED/<3 models>/ (planted artifacts on disjoint patches)."""
    root = tmp_path_factory.mktemp("sets")
    real, gen = root / "real", root / "gen"
    write_images(real, patches[:1000])
    for j, kind in enumerate(("checker", "stripes", "grid")):
        write_images(gen / f"m_{kind}", plant(patches[1000 + 100 * j:1100 + 100 * j], kind))
    (gen / "models.yaml").write_text(
        "models:\n"
        "  m_checker: {family: GAN, upsampling: transposed_conv}\n"
        "  m_stripes: {family: VAE, upsampling: nearest}\n"
        "  m_grid: {family: GAN, upsampling: nearest}\n")
    return real, gen


@pytest.fixture(scope="session")
def exp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`manifpt experiment all` on the tiny preset, once per session (the slow tests of
    test_experiments.py and test_report_render.py read it)."""
    from typer.testing import CliRunner

    from manifpt.cli import app

    out = tmp_path_factory.mktemp("exp")
    r = CliRunner().invoke(app, ["experiment", "all", "--config", "tiny", "--out", str(out / "res"), "--data",
                                 str(out / "data"), "--quiet"])
    assert r.exit_code == 0, r.output
    return out / "res"
