"""Offline real data sets: idx parsing, Fashion-MNIST loading and fallback, photo sets, PNG folders."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from manifpt import ImageSet, datasets
from manifpt.datasets import (
    FASHION_MNIST_DIR,
    DatasetUnavailableError,
    load_fashion_mnist,
    load_fashion_mnist_labels,
    load_photos,
    photo_groups,
    prepare_real,
    read_idx,
    split_halves,
    write_image_folder,
)
from manifpt.datasets_cli import data_app

runner = CliRunner()


def idx_bytes(arr: np.ndarray) -> bytes:
    """Hand-written idx encoding (independent of the parser): 0, 0, 0x08, ndim, big-endian dims, data."""
    return bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">i", d) for d in arr.shape) + arr.tobytes()


@pytest.fixture
def fake_fmnist(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    labels = np.arange(40, dtype=np.uint8) % 10
    root = tmp_path / "fm"
    root.mkdir()
    (root / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (root / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    (root / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images[:10])))
    return root, images, labels


def test_read_idx_gz_and_raw(tmp_path: Path) -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.idx").write_bytes(idx_bytes(arr))
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(idx_bytes(arr)))
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx.gz"), arr)
    lab = np.array([3, 1, 4, 1, 5], np.uint8)
    (tmp_path / "l.idx").write_bytes(idx_bytes(lab))
    np.testing.assert_array_equal(read_idx(tmp_path / "l.idx"), lab)


@pytest.mark.parametrize("blob, msg", [
    (b"\x01\x00\x08\x01\x00\x00\x00\x01x", "magic"),
    (b"\x00\x00\x0d\x01\x00\x00\x00\x01x", "type code"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x05abc", "header says"),
])
def test_read_idx_rejects_bad_files(tmp_path: Path, blob: bytes, msg: str) -> None:
    (tmp_path / "bad").write_bytes(blob)
    with pytest.raises(ValueError, match=msg):
        read_idx(tmp_path / "bad")


def test_load_fashion_mnist_from_idx_files(fake_fmnist) -> None:
    root, images, labels = fake_fmnist
    np.testing.assert_array_equal(load_fashion_mnist("train", root=root), images)
    np.testing.assert_array_equal(load_fashion_mnist("test", root=root), images[:10])
    np.testing.assert_array_equal(load_fashion_mnist_labels("train", root=root), labels)
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist("valid", root=root)


def test_missing_fashion_mnist_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    with pytest.raises(DatasetUnavailableError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(root=tmp_path, download=False)

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(DatasetUnavailableError, match=r"apt-get install dataset-fashion-mnist.*network unreachable"):
        load_fashion_mnist(root=tmp_path)


@pytest.mark.skipif(not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Debian package dataset-fashion-mnist not installed (only `make demo` installs it)")
def test_debian_fashion_mnist() -> None:
    x = load_fashion_mnist("train")
    assert x.shape == (60000, 28, 28) and x.dtype == np.uint8
    y = load_fashion_mnist_labels("train")
    assert np.bincount(y).tolist() == [6000] * 10
    assert load_fashion_mnist("test").shape == (10000, 28, 28)
    a, b = datasets.load_real("fmnist-a"), datasets.load_real("fmnist-b")
    assert a.shape == b.shape == (30000, 28, 28)


def test_split_halves_disjoint_and_stratified() -> None:
    labels = np.repeat(np.arange(5), [10, 11, 12, 13, 14])
    a, b = split_halves(labels, seed=3)
    assert len(a) == len(b) and not set(a) & set(b)
    np.testing.assert_array_equal(np.bincount(labels[a]), np.bincount(labels[b]))
    np.testing.assert_array_equal(split_halves(labels, seed=3)[0], a)


def test_photo_groups_disjoint_and_balanced() -> None:
    names = [f"src{s}/{i}" for s in range(3) for i in range(5 + s)]
    a, b = photo_groups(names)
    assert not set(a) & set(b) and sorted(a + b) == sorted(names)
    assert abs(len(a) - len(b)) <= 1
    for s in range(3):
        na = sum(n.startswith(f"src{s}/") for n in a)
        nb = sum(n.startswith(f"src{s}/") for n in b)
        assert abs(na - nb) <= 1


def test_photo_halves_come_from_disjoint_photographs(monkeypatch: pytest.MonkeyPatch) -> None:
    # each fake photograph has its own constant colour, so a crop tells which photograph it came from
    photos = {f"s/{i:02d}": np.full((40 + i, 50, 3), i * 10, np.uint8) for i in range(9)}
    monkeypatch.setattr(datasets, "real_photographs", lambda short_side=256: photos)
    a, b = load_photos(300, "a", seed=1), load_photos(300, "b", seed=1)
    assert a.shape == b.shape == (300, 32, 32, 3)
    ca, cb = set(np.unique(a[:, 0, 0, 0])), set(np.unique(b[:, 0, 0, 0]))
    ga, gb = photo_groups(list(photos))
    assert ca == {int(n[2:]) * 10 for n in ga} and cb == {int(n[2:]) * 10 for n in gb}
    counts = np.bincount(a[:, 0, 0, 0] // 10)
    assert counts[counts > 0].max() - counts[counts > 0].min() <= 1  # each photograph equally often
    np.testing.assert_array_equal(load_photos(300, "a", seed=1), a)


def test_real_photographs_curated_and_bounded() -> None:
    photos = datasets.real_photographs()
    assert len(photos) >= 8  # scikit-image + scikit-learn always; Debian photos when installed
    for name, im in photos.items():
        assert im.dtype == np.uint8 and im.ndim == 3 and im.shape[2] == 3, name
        assert min(im.shape[:2]) <= datasets.PHOTO_SHORT_SIDE and min(im.shape[:2]) >= 32, name
    names = set(photos)
    assert not any(n.endswith(("LinuxLogo.jpg", "pic1.png", "starry_night.jpg")) for n in names)


def test_write_image_folder_roundtrip_and_resume(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    paths = write_image_folder(gray, tmp_path / "g")
    assert [p.name for p in paths] == [f"{i:05d}.png" for i in range(5)]
    for p, im in zip(paths, gray, strict=True):
        np.testing.assert_array_equal(np.asarray(Image.open(p)), im)
    # a rerun skips existing files (resume), a later batch continues the numbering
    paths[2].unlink()
    stamp = paths[0].stat().st_mtime_ns
    write_image_folder(gray, tmp_path / "g")
    assert paths[0].stat().st_mtime_ns == stamp and paths[2].exists()
    rgb = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    more = write_image_folder(rgb, tmp_path / "c", start=7)
    assert [p.name for p in more] == ["00007.png", "00008.png", "00009.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(more[1])), rgb[1])
    assert not list((tmp_path / "g").glob(".*"))  # no temporary files left
    with pytest.raises(TypeError):
        write_image_folder(gray.astype(np.float32), tmp_path / "f")


def test_prepare_real_and_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_fmnist) -> None:
    root = fake_fmnist[0]
    monkeypatch.setenv("MANIFPT_FASHION_MNIST", str(root))
    out = prepare_real("fmnist", tmp_path / "real", n=12, seed=1)
    s = ImageSet.from_folder(out, show_progress=False)
    assert len(s) == 12 and s.shape == (28, 28)
    assert (out / "source.json").is_file()
    r = runner.invoke(data_app, ["fashion-mnist", "--out", str(tmp_path / "cli"), "--n", "7"])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "cli").glob("*.png"))) == 7
    r = runner.invoke(data_app, ["fashion-mnist", "--out", str(tmp_path / "half"), "--split", "a"])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "half").glob("*.png"))) == 20  # stratified half of 40
    monkeypatch.setenv("MANIFPT_FASHION_MNIST", str(tmp_path / "nowhere"))
    monkeypatch.setattr(datasets, "_torchvision_fashion_mnist",
                        lambda split, download: (_ for _ in ()).throw(DatasetUnavailableError("apt-get install x")))
    r = runner.invoke(data_app, ["fashion-mnist", "--out", str(tmp_path / "none")])
    assert r.exit_code == 2 and "apt-get install" in r.output


def test_photos_cli(tmp_path: Path) -> None:
    r = runner.invoke(data_app, ["photos", "--out", str(tmp_path / "p"), "--n", "20", "--group", "b"])
    assert r.exit_code == 0, r.output
    s = ImageSet.from_folder(tmp_path / "p", show_progress=False)
    assert len(s) == 20 and s.shape == (32, 32, 3)
    r = runner.invoke(data_app, ["photos", "--out", str(tmp_path / "p64"), "--n", "6", "--group", "a", "--size", "64"])
    assert r.exit_code == 0, r.output
    s64 = ImageSet.from_folder(tmp_path / "p64", show_progress=False)
    assert len(s64) == 6 and s64.shape == (64, 64, 3) and s64.bad == []  # its source.json is not reported
    src = json.loads((tmp_path / "p64" / "source.json").read_text())
    assert src["name"] == "photos64-a" and src["photographs"] == photo_groups(list(datasets.real_photographs()))[0]
    assert runner.invoke(data_app, ["photos", "--out", str(tmp_path / "p48"), "--size", "48"]).exit_code != 0
    r = runner.invoke(data_app, ["real", "nope", "--out", str(tmp_path / "x")])
    assert r.exit_code != 0
