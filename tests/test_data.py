"""Data layer: every kind of bad input is converted correctly or skipped and reported."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from manifpt.data import ArraySource, GeneratedSet, ImageSet, decode_bytes, load_factors, match_channels
from manifpt.errors import DataError


def _png_with_size(path: Path, w: int, h: int) -> None:
    """A tiny PNG whose header claims w×h pixels (a decompression bomb without the memory)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    d = tmp_path / "corpus"
    (d / "sub").mkdir(parents=True)
    expect: dict[str, np.ndarray] = {}
    Image.fromarray(rgb).save(d / "good.png")
    expect["good.png"] = rgb
    Image.fromarray(rgb).save(d / "sub" / "good.bmp")
    expect["sub/good.bmp"] = rgb
    Image.fromarray(rgb).save(d / "good.webp", lossless=True)
    expect["good.webp"] = rgb
    # RGBA with an opaque and a transparent pixel: composited over white
    rgba = np.dstack([rgb, np.full((16, 16), 255, np.uint8)])
    rgba[0, 0, 3] = 0
    Image.fromarray(rgba, "RGBA").save(d / "alpha.png")
    exp = rgb.copy()
    exp[0, 0] = 255
    expect["alpha.png"] = exp
    # palette image: converted through its palette
    pal = Image.fromarray(rgb).quantize(16)
    pal.save(d / "palette.png")
    expect["palette.png"] = np.asarray(pal.convert("RGB"))
    # 16-bit grayscale: scaled to 8 bits with rounding
    g16 = (rng.integers(0, 65536, (16, 16))).astype(np.uint16)
    Image.fromarray(g16).save(d / "gray16.png")
    expect["gray16.png"] = np.repeat(np.rint(g16 / 257.0).astype(np.uint8)[..., None], 3, -1)
    # CMYK JPEG: Pillow's CMYK → RGB (lossy file, so compare to Pillow's own decode)
    Image.fromarray(rgb).convert("CMYK").save(d / "cmyk.jpg", quality=95)
    expect["cmyk.jpg"] = np.asarray(Image.open(d / "cmyk.jpg").convert("RGB"))
    # bad files
    (d / "empty.png").write_bytes(b"")
    (d / "notes.png").write_text("this is not an image")
    full = (d / "good.png").read_bytes()
    (d / "truncated.png").write_bytes(full[: len(full) // 2])
    Image.fromarray(rgb).save(d / "trunc.jpg", quality=90)
    (d / "trunc.jpg").write_bytes((d / "trunc.jpg").read_bytes()[:200])
    _png_with_size(d / "bomb.png", 30000, 30000)
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(d / "small.png")
    (d / "readme.txt").write_text("reported: not an image extension")
    return d, expect


def test_bad_input_corpus(corpus: tuple[Path, dict[str, np.ndarray]]) -> None:
    d, expect = corpus
    s = ImageSet.from_folder(d, show_progress=False)
    assert sorted(s.rel_paths) == sorted(expect)
    assert s.shape == (16, 16, 3)
    for rel, want in expect.items():
        got = s.load([s.rel_paths.index(rel)])[0]
        np.testing.assert_array_equal(got, want, err_msg=rel)
    reasons = {Path(b.path).name: b.reason for b in s.bad}
    assert set(reasons) == {"empty.png", "notes.png", "truncated.png", "trunc.jpg", "bomb.png", "small.png",
                            "readme.txt"}
    assert "not an image file" in reasons["readme.txt"]
    assert "empty" in reasons["empty.png"]
    assert "not a recognised image" in reasons["notes.png"]
    assert "incomplete image data" in reasons["truncated.png"] and "truncated" in reasons["trunc.jpg"]
    assert "decompression bomb" in reasons["bomb.png"]
    assert "differs from the set's common size" in reasons["small.png"]
    assert all(str(d) in b.path for b in s.bad)  # the report names the file


def test_streamed_load_equals_in_memory(corpus, monkeypatch) -> None:
    import manifpt.data as data

    d, _ = corpus
    mem = ImageSet.from_folder(d, show_progress=False)
    monkeypatch.setattr(data, "IN_MEMORY_BYTES", 0)  # force per-batch decoding from disk
    disk = ImageSet.from_folder(d, show_progress=False)
    assert disk._pixels is None and mem._pixels is not None
    np.testing.assert_array_equal(disk.load(range(len(disk))), mem.load(range(len(mem))))
    assert disk.fingerprint() == mem.fingerprint()


def test_resize_only_when_asked(corpus) -> None:
    d, _ = corpus
    s = ImageSet.from_folder(d, size=12, show_progress=False)
    assert s.shape == (12, 12, 3)
    assert "small.png" in s.rel_paths  # resized instead of skipped
    assert s.load([0]).shape == (1, 12, 12, 3)


def test_grayscale_set_stays_one_channel(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (4, 10, 10), dtype=np.uint8)
    for i, im in enumerate(imgs):
        Image.fromarray(im).save(tmp_path / f"{i}.png")
    s = ImageSet.from_folder(tmp_path, show_progress=False)
    assert s.shape == (10, 10) and s.channels == 1
    np.testing.assert_array_equal(s.load(range(4)), imgs)
    Image.fromarray(np.dstack([imgs[0]] * 3)).save(tmp_path / "colour.png")
    s2 = ImageSet.from_folder(tmp_path, show_progress=False)
    assert s2.channels == 3  # one colour image makes the whole set RGB
    a, b = match_channels(s, ImageSet.from_folder(tmp_path, show_progress=False))
    assert a.channels == b.channels == 3
    np.testing.assert_array_equal(a.load([0])[0, :, :, 1], imgs[0])


def test_fingerprint_tracks_content(tmp_path: Path) -> None:
    im = np.zeros((6, 6, 3), np.uint8)
    Image.fromarray(im).save(tmp_path / "a.png")
    f1 = ImageSet.from_folder(tmp_path, show_progress=False).fingerprint()
    im[0, 0] = 1
    Image.fromarray(im).save(tmp_path / "a.png")
    assert ImageSet.from_folder(tmp_path, show_progress=False).fingerprint() != f1


def test_generated_set_and_factors(tmp_path: Path) -> None:
    im = np.zeros((6, 6, 3), np.uint8)
    for m in ("gan_a", "vae_b"):
        (tmp_path / m / "deep").mkdir(parents=True)
        Image.fromarray(im).save(tmp_path / m / "deep" / "x.png")
        Image.fromarray(im).save(tmp_path / m / "y.png")
    Image.fromarray(im).save(tmp_path / "loose.png")
    (tmp_path / "models.yaml").write_text("gan_a: {family: GAN, lr: 0.0002}\nvae_b: {family: VAE}\n")
    g = GeneratedSet.from_folder(tmp_path, show_progress=False)
    assert g.models == ["gan_a", "gan_a", "vae_b", "vae_b"]
    assert g.labels("family") == ["GAN", "GAN", "VAE", "VAE"]
    assert g.factors["gan_a"]["lr"] == "0.0002"
    with pytest.raises(DataError, match="'lr' is not given for model"):
        g.labels("lr")
    assert any("not inside a model sub-folder" in b.reason for b in g.images.bad)
    (tmp_path / "models.yaml").unlink()
    (tmp_path / "models.csv").write_text("model,family\ngan_a,GAN\nvae_b,VAE\n")
    assert load_factors(tmp_path)["vae_b"] == {"family": "VAE"}


def test_decode_errors_name_the_file() -> None:
    from manifpt.data import BadImageError

    with pytest.raises(BadImageError, match=r"x\.png: empty file"):
        decode_bytes(b"", "x.png")


def test_array_source_validation() -> None:
    with pytest.raises(TypeError, match="uint8"):
        ArraySource(np.zeros((2, 4, 4), np.float32))
    with pytest.raises(ValueError, match="N×H×W"):
        ArraySource(np.zeros((2, 4, 4, 2), np.uint8))
    assert ArraySource(np.zeros((2, 4, 4, 1), np.uint8)).shape == (4, 4)
