"""Shortcut audit: header fields against the encoder settings that wrote them, planted format shortcuts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from manifpt import audit as A


def smooth_images(n: int, seed: int, size: int = 32) -> list[Image.Image]:
    """``n`` random smooth RGB images, all from one distribution (4×4 noise upsampled bicubically)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
    return [Image.fromarray(c).resize((size, size), Image.Resampling.BICUBIC) for c in coarse]


def save_all(folder: Path, images: list[Image.Image], fmt: str, bits: int = 8) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, im in enumerate(images):
        if bits < 8:
            im = ImageOps.posterize(im, bits)
        p = folder / f"img{i:03d}.{'jpg' if fmt == 'JPEG' else 'png'}"
        im.save(p, quality=90) if fmt == "JPEG" else im.save(p)
        paths.append(p)
    return paths


def build(root: Path, real_fmt: str, model_fmts: dict[str, str], bits: dict[str, int] | None = None,
          n_real: int = 40, n_model: int = 30) -> tuple[Path, Path]:
    """real/ (``n_real`` files) and generated/<model>/ (``n_model`` each), one content distribution
    (``bits``: a model whose images keep that many bits per channel)."""
    save_all(root / "real", smooth_images(n_real, seed=0), real_fmt)
    for k, (m, fmt) in enumerate(model_fmts.items()):
        save_all(root / "generated" / m, smooth_images(n_model, seed=k + 1), fmt, (bits or {}).get(m, 8))
    (root / "generated" / "models.yaml").write_text("models: {}\n")
    return root / "real", root / "generated"


def pick(result: A.AuditResult, question: str) -> dict:
    return next(t for t in result.tests if t["question"] == question)


# --------------------------------------------------------------------------- one file


@pytest.mark.parametrize("q", [50, 75, 90, 95])
def test_jpeg_quality_round_trips_pillows_quality(tmp_path: Path, q: int) -> None:
    p = tmp_path / "x.jpg"
    smooth_images(1, seed=q)[0].save(p, quality=q)
    meta = A.file_metadata(p)
    assert meta["format"] == "JPEG" and meta["lossy"] is True
    assert meta["jpeg_quality"] == q


@pytest.mark.parametrize(("code", "name"), [(0, "4:4:4"), (1, "4:2:2"), (2, "4:2:0")])
def test_subsampling_is_read_from_the_header(tmp_path: Path, code: int, name: str) -> None:
    p = tmp_path / "x.jpg"
    smooth_images(1, seed=code)[0].save(p, quality=85, subsampling=code)
    assert A.file_metadata(p)["subsampling"] == name


def test_png_has_no_jpeg_fields_and_its_bit_depth(tmp_path: Path) -> None:
    im = smooth_images(1, seed=0)[0]
    im.save(tmp_path / "rgb.png")
    meta = A.file_metadata(tmp_path / "rgb.png")
    assert meta["format"] == "PNG" and meta["mode"] == "RGB" and (meta["width"], meta["height"]) == (32, 32)
    assert meta["jpeg_quality"] is None and meta["subsampling"] is None and meta["lossy"] is False
    assert meta["bit_depth"] == 8
    assert meta["bytes_per_pixel"] == pytest.approx((tmp_path / "rgb.png").stat().st_size / (32 * 32))
    Image.fromarray(np.asarray(im.convert("L")).astype(np.uint16) * 257).save(tmp_path / "g16.png")
    assert A.file_metadata(tmp_path / "g16.png")["bit_depth"] == 16


def test_webp_lossless_and_lossy_are_told_apart(tmp_path: Path) -> None:
    im = smooth_images(1, seed=0)[0]
    im.save(tmp_path / "a.webp", lossless=True)
    im.save(tmp_path / "b.webp", quality=80)
    assert A.file_metadata(tmp_path / "a.webp")["lossy"] is False
    assert A.file_metadata(tmp_path / "b.webp")["lossy"] is True


def test_exif_and_icc_flags(tmp_path: Path) -> None:
    im = smooth_images(1, seed=0)[0]
    exif = Image.Exif()
    exif[0x0110] = "camera model"
    im.save(tmp_path / "exif.jpg", exif=exif.tobytes())
    im.save(tmp_path / "plain.jpg")
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    im.save(tmp_path / "icc.png", icc_profile=icc)
    im.save(tmp_path / "plain.png")
    assert A.file_metadata(tmp_path / "exif.jpg")["exif"] is True
    assert A.file_metadata(tmp_path / "plain.jpg")["exif"] is False
    assert A.file_metadata(tmp_path / "icc.png")["icc"] is True
    assert A.file_metadata(tmp_path / "plain.png")["icc"] is False


def test_unreadable_files_give_an_error_not_an_exception(tmp_path: Path) -> None:
    (tmp_path / "noise.png").write_bytes(np.random.default_rng(0).bytes(500))
    (tmp_path / "empty.png").write_bytes(b"")
    smooth_images(1, seed=0)[0].save(tmp_path / "ok.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "ok.png").read_bytes()[:20])
    for name in ("noise.png", "empty.png", "cut.png", "missing.png"):
        meta = A.file_metadata(tmp_path / name)
        assert set(meta) == {"error"} and meta["error"], name


# --------------------------------------------------------------------------- planted shortcuts


def test_real_jpeg_against_generated_png_warns(tmp_path: Path) -> None:
    real, gen = build(tmp_path, "JPEG", {"a": "PNG", "b": "PNG", "c": "PNG"})
    result = A.audit_folders(real, gen)
    t = pick(result, A.VS_REAL)
    assert t["warn"] and t["balanced_accuracy"] >= t["chance"] + A.WARN_MARGIN * (1 - t["chance"])
    assert t["chance"] == 0.5 and t["n"] == 40 + 3 * 30
    assert "format" in t["telling_fields"]
    assert result.warning is not None and "real from generated" in result.warning
    assert "generated classes" not in result.warning and not pick(result, A.VS_CLASSES)["warn"]
    assert result.groups["real"]["format"] == {"JPEG": 1.0} and result.groups["real"]["jpeg_quality"] == 90
    assert result.groups["a"]["format"] == {"PNG": 1.0} and result.groups["a"]["jpeg_quality"] is None
    assert result.errors == []  # models.yaml is expected there


def test_same_encoding_does_not_warn_even_when_lossless_sizes_differ(tmp_path: Path) -> None:
    # model "b" makes fewer colours, so its PNGs are smaller: a property of its pixels, not of the file format
    real, gen = build(tmp_path, "PNG", {"a": "PNG", "b": "PNG", "c": "PNG"}, bits={"b": 3})
    result = A.audit_folders(real, gen)
    assert result.groups["b"]["bytes_per_pixel"] < 0.6 * result.groups["a"]["bytes_per_pixel"]
    assert result.warning is None
    for t in result.tests:
        assert not t["warn"] and t["balanced_accuracy"] == t["chance"]  # every feature constant: exactly chance
        assert t["telling_fields"] == []


def test_one_generated_model_in_jpeg_warns_generated_classes(tmp_path: Path) -> None:
    real, gen = build(tmp_path, "PNG", {"a": "PNG", "b": "JPEG"})
    result = A.audit_folders(real, gen)
    t = pick(result, A.VS_CLASSES)
    assert t["warn"] and t["classes"] == ["a", "b"] and t["recall"]["b"] == 1.0
    assert result.warning is not None and "generated classes" in result.warning


def test_one_odd_model_among_many_is_singled_out(tmp_path: Path) -> None:
    # balanced accuracy averages over classes: one JPEG model among four stays under the warning
    # level, but the metadata classifier finds every one of its files, and only those: it warns
    real, gen = build(tmp_path, "PNG", {"a": "PNG", "b": "PNG", "c": "PNG", "d": "JPEG"}, n_real=10, n_model=12)
    result = A.audit_folders(real, gen)
    t = pick(result, A.VS_CLASSES)
    assert t["recall"]["d"] == 1.0 and t["telling_fields"][0] == "format"
    assert t["balanced_accuracy"] < t["chance"] + A.WARN_MARGIN * (1 - t["chance"])
    assert t["singled_out"] == ["d"] and t["warn"]
    assert "d from the other generated classes" in result.warning


def test_corrupt_file_is_reported_and_the_audit_goes_on(tmp_path: Path) -> None:
    real, gen = build(tmp_path, "JPEG", {"a": "PNG", "b": "PNG"}, n_real=20, n_model=15)
    bad = gen / "a" / "zz_broken.png"
    bad.write_bytes(np.random.default_rng(1).bytes(300))
    (real / "notes.txt").write_text("not an image")
    result = A.audit_folders(real, gen)
    reasons = dict(result.errors)
    assert str(bad) in reasons and "recognised" in reasons[str(bad)]
    assert str(real / "notes.txt") in reasons  # left out by the folder scan, with its reason
    assert result.groups["a"]["files"] == 15 and result.groups["a"]["total"] == 16
    assert pick(result, A.VS_REAL)["warn"]


def test_subsample_json_and_markdown(tmp_path: Path) -> None:
    real, gen = build(tmp_path, "JPEG", {"a": "PNG", "b|c": "PNG"}, n_real=20, n_model=12)
    result = A.audit_folders(real, gen, max_per_group=8, folds=3)
    assert {g: (s["files"], s["total"]) for g, s in result.groups.items()} == {
        "real": (8, 20), "a": (8, 12), "b|c": (8, 12)}
    A.write_audit(result, tmp_path / "out")
    doc = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert doc["format"] == A.FORMAT and doc["warning"] == result.warning
    assert doc["groups"]["real"]["files"] == 8 and len(doc["tests"]) == 2
    md = (tmp_path / "out" / "audit.md").read_text()
    assert md == result.markdown()
    rows = [line for line in md.splitlines() if line.startswith("| real |")]
    assert len(rows) == 1 and "JPEG" in rows[0] and "8 of 20" in rows[0]
    assert "| b\\|c |" in md  # a pipe in a group name does not break the table
    assert "**Warning:**" in md and "real vs generated" in md


def test_bad_arguments_are_usage_errors(tmp_path: Path) -> None:
    p = save_all(tmp_path, smooth_images(2, seed=0), "PNG")
    with pytest.raises(A.UsageError):
        A.audit(p, p, ["a"])
    with pytest.raises(A.UsageError):
        A.audit([], p, ["a", "b"])
