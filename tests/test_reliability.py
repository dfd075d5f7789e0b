"""Bad input and tampered files (issue 15): nothing silently wrong, nothing silently dropped, no run-killing
file, and errors a person can read. Each test failed on the code before its fix."""

from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from manifpt.cache import atomic_write_bytes, write_json
from manifpt.cli import app
from manifpt.data import BadImageError, GeneratedSet, ImageSet, _to_uint8, decode_bytes
from manifpt.demo import plant
from manifpt.store import ArtifactStore

runner = CliRunner()
NON_UTF8 = os.fsdecode(b"caf\xe9-\xff.png")  # a Latin-1 file name: not valid UTF-8


# --------------------------------------------------------------------------- helpers


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_bytes(w: int, h: int, depth: int, colour: int, raw: bytes, interlace: int = 0) -> bytes:
    """A well-formed PNG (valid chunks and CRCs) whose zlib stream holds exactly ``raw``."""
    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, interlace)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw))
            + _chunk(b"IEND", b""))


def _save(folder: Path, images: np.ndarray, prefix: str = "img") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        Image.fromarray(im).save(folder / f"{prefix}{i:03d}.png")


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _cli(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def _one_message(r, code: int, *needles: str) -> None:
    """An expected failure: the exit code, no traceback, a short message naming what to fix."""
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert 1 <= len(lines) <= 6, r.output  # our message is 1-2 lines; Click's usage errors draw a box
    for n in needles:
        assert n in r.output, (n, r.output)


@pytest.fixture(scope="module")
def small(tmp_path_factory, patches: np.ndarray) -> tuple[Path, Path]:
    """REAL/ (120 16×16 crops) and GENERATED/<3 planted models, 10 images each>/ with models.yaml."""
    root = tmp_path_factory.mktemp("small")
    crops = np.ascontiguousarray(patches[:, :16, :16])
    _save(root / "real", crops[:120])
    for j, kind in enumerate(("checker", "stripes", "grid")):
        _save(root / "gen" / f"m_{kind}", plant(crops[200 + 10 * j:210 + 10 * j], kind))
    (root / "gen" / "models.yaml").write_text(
        "models:\n  m_checker: {family: GAN}\n  m_stripes: {family: VAE}\n  m_grid: {family: GAN}\n")
    return root / "real", root / "gen"


def _copy(small: tuple[Path, Path], dst: Path) -> tuple[Path, Path]:
    real, gen = dst / "real", dst / "gen"
    shutil.copytree(small[0], real)
    shutil.copytree(small[1], gen)
    return real, gen


FIT = ("--space", "rgb", "--seeds", "1", "--arch", "linear", "--epochs", "2", "--no-tsne", "--quiet")


@pytest.fixture(scope="module")
def small_run(small, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("small_run")
    r = _cli("fit", "--real", small[0], "--generated", small[1], "--out", out, *FIT)
    assert r.exit_code == 0, r.output
    return out


# --------------------------------------------------------------------------- 1. non-UTF-8 file names


def test_non_utf8_file_names_are_processed_not_fatal(small, tmp_path: Path) -> None:
    real, gen = _copy(small, tmp_path)
    shutil.move(real / "img000.png", real / NON_UTF8)
    shutil.move(gen / "m_grid" / "img000.png", gen / "m_grid" / NON_UTF8)
    out = tmp_path / "art"
    r = _cli("artifacts", "--real", real, "--generated", gen, "--out", out, "--quiet")
    assert r.exit_code == 0, r.output
    rows = ArtifactStore(out).table()
    assert len(rows) == 30 and f"m_grid/{NON_UTF8}" in {r["path"] for r in rows}
    # the table holds the name byte for byte, so the path it names opens the file
    assert (gen / next(r["path"] for r in rows if NON_UTF8 in r["path"])).is_file()
    r = _cli("fit", "--real", real, "--generated", gen, "--out", tmp_path / "run", *FIT)
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "run" / "run.json").read_text())["n_items"] == 30
    r = _cli("check", real)
    assert r.exit_code == 0 and "120 usable" in r.output


# --------------------------------------------------------------------------- 2. broken images accepted as good


def test_png_with_missing_rows_is_refused_not_zero_filled() -> None:
    row = b"\0" + bytes(range(48))
    full = png_bytes(16, 16, 8, 2, row * 16)
    assert decode_bytes(full).shape == (16, 16, 3)
    with pytest.raises(BadImageError, match="incomplete image data"):
        decode_bytes(png_bytes(16, 16, 8, 2, row * 8), "half.png")


def test_strict_decode_keeps_valid_pngs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (13, 11, 3), dtype=np.uint8)
    for kw in ({}, {"interlace": 1}):  # Adam7 interlaced too: no false "incomplete"
        p = tmp_path / "a.png"
        Image.fromarray(rgb).save(p, **kw)
        np.testing.assert_array_equal(decode_bytes(p.read_bytes()), rgb)
    g16 = rng.integers(0, 65536, (7, 9)).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g.png")
    np.testing.assert_array_equal(decode_bytes((tmp_path / "g.png").read_bytes()),
                                  np.rint(g16 / 257.0).astype(np.uint8))


def test_tiny_png_declaring_9000_squared_is_refused_even_with_size(tmp_path: Path) -> None:
    d = tmp_path / "set"
    _save(d, np.zeros((3, 16, 16, 3), np.uint8))
    (d / "huge.png").write_bytes(png_bytes(9000, 9000, 8, 0, b"\0" * 9001 * 2))
    s = ImageSet.from_folder(d, size=16, show_progress=False)
    assert "huge.png" not in s.rel_paths
    assert any(b.path.endswith("huge.png") and "incomplete" in b.reason for b in s.bad)


# --------------------------------------------------------------------------- 3. memory blow-up


def test_97_byte_16bit_png_declaring_9000_squared_costs_no_memory(tmp_path: Path) -> None:
    p = tmp_path / "bomb16.png"
    p.write_bytes(png_bytes(9000, 9000, 16, 0, b"\0" * 18001 * 2))
    assert len(p.read_bytes()) < 200
    # VmHWM, not ru_maxrss: a forked child's ru_maxrss starts at its parent's (the test process's) peak
    code = ("from manifpt.data import decode_bytes, BadImageError\n"
            f"try:\n    decode_bytes(open({str(p)!r}, 'rb').read())\n    print('decoded')\n"
            "except BadImageError as e:\n    print('refused', e.reason)\n"
            "print(next(ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    verdict, rss_kb = out.stdout.splitlines()[0], int(out.stdout.splitlines()[-1])
    assert verdict.startswith("refused") and "incomplete" in verdict
    assert rss_kb < 400_000, f"peak RSS {rss_kb / 1e3:.0f} MB"  # it was > 1 GB


def test_16bit_conversion_needs_no_float64_copy() -> None:
    import tracemalloc

    g16 = np.random.default_rng(0).integers(0, 65536, (2000, 2000)).astype(np.uint16)  # 8 MB
    im = Image.fromarray(g16)
    tracemalloc.start()
    out = _to_uint8(im)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_array_equal(out, np.rint(g16 / 257.0).astype(np.uint8))
    assert peak < 8e6 + 4e6 + 12e6, f"{peak / 1e6:.0f} MB"  # input copy + output + chunk temporaries


# --------------------------------------------------------------------------- 4. files silently left out


def test_every_left_out_entry_is_reported(tmp_path: Path, monkeypatch) -> None:
    d = tmp_path / "set"
    _save(d, np.zeros((3, 16, 16, 3), np.uint8))
    (d / "sub").mkdir()
    os.symlink("..", d / "sub" / "loop")  # a folder link loop
    os.symlink("self.png", d / "self.png")  # a file link loop
    os.symlink("missing.png", d / "dangling.png")
    os.mkfifo(d / "pipe.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(d / "anim.gif")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(d / "scan.tif")
    (d / "locked").mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(d / "locked" / "x.png")
    real_scandir = os.scandir

    def scandir(path):  # the suite runs as root, which reads any folder: refuse this one as a kernel would
        if Path(path).name == "locked":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    s = ImageSet.from_folder(d, show_progress=False)
    assert len(s) == 3
    reasons = {Path(b.path).name: b.reason for b in s.bad}
    assert "link to a folder that is already scanned" in reasons["loop"]
    assert "link loop" in reasons["self.png"]
    assert "dangling link" in reasons["dangling.png"]
    assert "FIFO" in reasons["pipe.png"] and "never opened" in reasons["pipe.png"]
    assert "not supported" in reasons["anim.gif"] and "not supported" in reasons["scan.tif"]
    assert "cannot read folder" in reasons["locked"]


def test_model_folder_problems_are_reported(tmp_path: Path) -> None:
    g = tmp_path / "gen"
    ims = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    _save(g / "a", ims[:3])
    _save(g / "b", ims[3:])
    shutil.copy(g / "a" / "img000.png", g / "b" / "copy.png")  # same bytes, two models
    (g / "empty").mkdir()
    (g / "broken").mkdir()
    (g / "broken" / "x.png").write_bytes(b"not a png")
    (g / "models.yaml").write_text("a: {family: GAN}\nb: {family: VAE}\nghost: {family: GAN}\n")
    gs = GeneratedSet.from_folder(g, show_progress=False)
    assert gs.model_names == ["a", "b"]
    reasons = {b.path: b.reason for b in gs.images.bad}
    assert "empty model folder" in reasons[str(g / "empty")]
    assert "no usable image" in reasons[str(g / "broken")] and "model left out" in reasons[str(g / "broken")]
    assert "entry 'ghost' has no model folder" in reasons[str(g / "models.yaml")]
    assert "same bytes as a/img000.png" in reasons[str(g / "b" / "copy.png")]


def test_predict_never_opens_a_fifo(small_run: Path, tmp_path: Path) -> None:
    from manifpt.fit import predict_files

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    result: dict = {}
    t = threading.Thread(target=lambda: result.update(predict_files(small_run, [fifo])), daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "predict blocked on a FIFO"
    assert result["skipped"] and "FIFO" in result["skipped"][0]["reason"]


# --------------------------------------------------------------------------- 5. integrity of stored outputs


def _tamper(path: Path, offset: int = -4, data: bytes = b"\xff\xff\x7f\x7f") -> None:
    b = bytearray(path.read_bytes())
    b[offset:offset + len(data) if offset + len(data) else None] = data
    path.write_bytes(bytes(b))


@pytest.mark.parametrize("damage", ["npy-bytes", "npy-truncated", "csv-edited", "table-edited"])
def test_damaged_store_is_rebuilt_never_reused(small, tmp_path: Path, damage: str) -> None:
    real, gen = small
    args = ["artifacts", "--real", real, "--generated", gen, "--shard-size", "8", "--quiet"]
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert _cli(*args, "--out", ref).exit_code == 0
    shutil.copytree(ref, out)
    target = {"npy-bytes": out / "shards" / "00001.npy", "npy-truncated": out / "shards" / "00002.npy",
              "csv-edited": out / "shards" / "00000.csv", "table-edited": out / "table.csv"}[damage]
    if damage == "npy-truncated":
        target.write_bytes(target.read_bytes()[:-100])
    elif damage.endswith("edited"):
        target.write_text(target.read_text().replace("m_checker", "m_stripes", 1))
    else:
        _tamper(target)
    r = _cli("artifacts", "show", out)
    _one_message(r, 1, "differs from what was written")
    r = _cli(*args, "--out", out)
    assert r.exit_code == 0, r.output
    assert _files(out) == _files(ref)


def test_store_killed_before_it_was_complete_is_not_shown_as_complete(small, tmp_path: Path) -> None:
    real, gen = small
    out = tmp_path / "art"
    assert _cli("artifacts", "--real", real, "--generated", gen, "--out", out, "--quiet").exit_code == 0
    (out / "complete.json").unlink()
    (out / "summary.json").unlink()  # as if killed after table.csv
    _one_message(_cli("artifacts", "show", out), 1, "incomplete")


def test_damaged_embedding_cache_is_rebuilt(patches: np.ndarray, tmp_path: Path) -> None:
    from manifpt.manifold import Manifold
    from manifpt.spaces import get_space

    real = patches[:50, :8, :8]
    m = Manifold(get_space("rgb"), cache=tmp_path, show_progress=False).fit(real)
    emb_file = m.cache_path_ / "emb.f32"
    good = np.array(m.embeddings_)
    del m
    _tamper(emb_file, 40)  # one float becomes 3.4e38
    m2 = Manifold(get_space("rgb"), cache=tmp_path, show_progress=False).fit(real)
    np.testing.assert_array_equal(np.asarray(m2.embeddings_), good)
    assert float(np.abs(m2.embeddings_).max()) <= 1.0


# --------------------------------------------------------------------------- 6. predict


def test_predict_works_from_another_directory(small, tmp_path: Path, monkeypatch) -> None:
    _, gen = _copy(small, tmp_path / "data")
    monkeypatch.chdir(tmp_path / "data")
    r = _cli("fit", "--real", "real", "--generated", "gen", "--out", "run", *FIT)
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "data" / "run" / "run.json").read_text())["config"]
    assert Path(cfg["real"]).is_absolute() and Path(cfg["generated"]).is_absolute()
    monkeypatch.chdir(tmp_path)
    r = _cli("predict", "--model", "data/run", gen / "m_grid" / "img001.png", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["predictions"][0]["predicted"].startswith("m_")


def test_predict_refuses_a_real_set_that_changed(small, tmp_path: Path) -> None:
    real, gen = _copy(small, tmp_path)
    run = tmp_path / "run"
    assert _cli("fit", "--real", real, "--generated", gen, "--out", run, *FIT).exit_code == 0
    Image.fromarray(np.full((16, 16, 3), 7, np.uint8)).save(real / "new.png")
    _one_message(_cli("predict", "--model", run, gen / "m_grid" / "img001.png"), 1, "changed since this run")


def test_checkpoint_with_wrong_normalisation_shape_is_refused(small_run: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    copy = tmp_path / "run"
    shutil.copytree(small_run, copy)
    weights = copy / json.loads((copy / "run.json").read_text())["models"][0] / "model.safetensors"
    tensors = load_file(str(weights))
    tensors["norm.mean"] = tensors["norm.mean"].reshape(-1)[:1].contiguous()  # broadcasts: a silent change
    save_file(tensors, str(weights))
    one = next((Path(json.loads((copy / "run.json").read_text())["config"]["generated"]) / "m_grid").glob("*.png"))
    _one_message(_cli("predict", "--model", copy, one), 1, "norm.mean", "expected")


def test_grayscale_input_to_an_rgb_run_is_warned(small_run: Path, tmp_path: Path) -> None:
    p = tmp_path / "gray.png"
    Image.fromarray(np.full((16, 16), 128, np.uint8)).save(p)
    r = _cli("predict", "--model", small_run, p)
    assert r.exit_code == 0, r.output
    assert "warning" in r.output and "grayscale" in r.output


# --------------------------------------------------------------------------- 7. fit lists skipped files


def test_fit_reports_and_writes_skipped_files(small, tmp_path: Path) -> None:
    real, gen = _copy(small, tmp_path)
    (gen / "m_grid" / "broken.png").write_bytes(b"nope")
    (real / "cut.png").write_bytes((real / "img000.png").read_bytes()[:60])
    out = tmp_path / "run"
    r = _cli("fit", "--real", real, "--generated", gen, "--out", out, *FIT)
    assert r.exit_code == 0, r.output
    assert "broken.png" in r.output and "cut.png" in r.output and "bad_files.csv" in r.output
    listed = (out / "bad_files.csv").read_bytes().decode("utf-8", "surrogateescape")
    assert "broken.png" in listed and "cut.png" in listed


# --------------------------------------------------------------------------- 8. arguments checked first


def test_arguments_are_checked_before_any_work(small, tmp_path: Path) -> None:
    real, gen = small
    fit = ["fit", "--real", real, "--generated", gen, "--out", tmp_path / "o"]
    _one_message(_cli(*fit, "--seeds", "0"), 2, "--seeds")
    _one_message(_cli(*fit, "--space", "rbg"), 2, "unknown space 'rbg'", "rgb")
    _one_message(_cli(*fit, "--target", "famly"), 2, "unknown target 'famly'", "family")
    _one_message(_cli("fit", "--real", gen, "--generated", gen, "--out", tmp_path / "o"), 2, "same folder")
    (tmp_path / "file").write_text("x")
    _one_message(_cli("fit", "--real", real, "--generated", gen, "--out", tmp_path / "file"), 2, "is a file")
    one = tmp_path / "one"
    shutil.copytree(gen / "m_grid", one / "m_grid")
    _one_message(_cli("fit", "--real", real, "--generated", one, "--out", tmp_path / "o"), 2, "only one class")
    few = tmp_path / "few"
    shutil.copytree(gen, few)
    for p in sorted((few / "m_grid").glob("*.png"))[2:]:
        p.unlink()
    _one_message(_cli("fit", "--real", real, "--generated", few, "--out", tmp_path / "few_out"), 2,
                 "class 'm_grid'", "at least 3")
    assert not (tmp_path / "few_out" / "results.json").exists()
    _one_message(_cli("compare", "--real", real, "--generated", gen, "--out", tmp_path / "c", "--methods",
                      "durall", "--spaces", "rgb"), 2, "unknown baseline 'durall'", "durall20")


def test_no_nan_or_infinity_is_ever_written_to_json(tmp_path: Path) -> None:
    write_json(tmp_path / "r.json", {"mean": float("nan"), "std": np.float32("inf"), "ok": [1.5, -float("inf")]})
    assert json.loads((tmp_path / "r.json").read_text()) == {"mean": None, "std": None, "ok": [1.5, None]}
    assert "NaN" not in (tmp_path / "r.json").read_text()


# --------------------------------------------------------------------------- 9. messages, not tracebacks


@pytest.mark.parametrize(("name", "text", "needle"), [
    ("models.yaml", "models: {m_grid: {family: GAN}\n", "not readable YAML"),  # unclosed brace
    ("models.yaml", "- family: GAN\n", "needs a 'name'"),  # a list without names
    ("models.yaml", "m_grid: GAN\n", "maps to a str"),  # a model mapped to a value
    ("models.yaml", "m_grid: !!python/object/apply:os.system ['echo pwned']\n", "not readable YAML"),  # runs code
    ("models.csv", "family,norm\nGAN,batch\n", "needs a 'model' column"),  # no model column
    ("models.csv", "model,family\nm_grid,GAN,extra\n", "no extra fields"),  # a row longer than the header
])
def test_malformed_manifest_is_one_message(small, tmp_path: Path, name: str, text: str, needle: str) -> None:
    real, gen = _copy(small, tmp_path)
    (gen / "models.yaml").unlink()
    (gen / name).write_text(text)
    r = _cli("artifacts", "--real", real, "--generated", gen, "--out", tmp_path / "a", "--quiet")
    _one_message(r, 1, name, needle)


def test_unreadable_checkpoint_and_missing_folders_are_messages(small_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(small_run, copy)
    weights = copy / json.loads((copy / "run.json").read_text())["models"][0] / "model.safetensors"
    weights.write_bytes(b"\x00garbage")
    _one_message(_cli("predict", "--model", copy, weights), 1, "model.safetensors", "safetensors")
    _one_message(_cli("predict", "--model", tmp_path / "nowhere", weights), 1, "not a manifpt run")
    _one_message(_cli("artifacts", "--real", tmp_path / "none", "--generated", tmp_path, "--out", tmp_path / "x"),
                 2, "no such folder")
    r = _cli("--debug", "predict", "--model", tmp_path / "nowhere", weights)
    assert r.exit_code != 0 and r.exception is not None and "not a manifpt run" in str(r.exception)


def test_stale_temporary_files_are_removed(small, tmp_path: Path, monkeypatch) -> None:
    real, gen = small
    out = tmp_path / "art"
    out.mkdir()
    (out / ".bad_files.csv.tmp999999999").write_text("left by a killed run")
    assert _cli("artifacts", "--real", real, "--generated", gen, "--out", out, "--quiet").exit_code == 0
    assert not list(out.glob(".*.tmp*")) and not list((out / "shards").glob(".*.tmp*"))

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space"):
        atomic_write_bytes(tmp_path / "x.bin", b"data")
    assert not list(tmp_path.glob(".x.bin.tmp*"))


# --------------------------------------------------------------------------- the bad-input corpus


def test_bad_input_corpus_equals_a_run_on_the_good_files_alone(small, tmp_path: Path) -> None:
    """Every kind of bad input mixed into valid folders: no crash, each reported by path and reason, and
    the outputs equal those of a run on the good files alone."""
    clean = _copy(small, tmp_path / "clean")
    real, gen = _copy(small, tmp_path / "dirty")
    planted: dict[str, str] = {}

    def plant_bad(path: Path, why: str, data: bytes | None = None) -> None:
        if data is not None:
            path.write_bytes(data)
        planted[str(path)] = why

    row = b"\0" + bytes(48)
    for folder in (real, gen / "m_checker"):
        plant_bad(folder / "empty.png", "empty file", b"")
        plant_bad(folder / "text.png", "not a recognised image", b"hello")
        plant_bad(folder / "cut.png", "incomplete image data", (real / "img001.png").read_bytes()[:70])
        plant_bad(folder / "rows.png", "incomplete image data", png_bytes(16, 16, 8, 2, row * 5))
        plant_bad(folder / "bomb16.png", "incomplete image data", png_bytes(9000, 9000, 16, 0, b"\0" * 36002))
        plant_bad(folder / "small.png", "differs from the set's common size", _png(np.zeros((8, 8, 3), np.uint8)))
        os.symlink("gone.png", folder / "dangling.png")
        plant_bad(folder / "dangling.png", "dangling link")
        os.mkfifo(folder / "pipe.png")
        plant_bad(folder / "pipe.png", "FIFO")
        plant_bad(folder / "notes.txt", "not an image file", b"notes")
        plant_bad(folder / "anim.gif", "not supported", _png(np.zeros((16, 16, 3), np.uint8), "GIF"))
    os.symlink(".", real / "loop")
    plant_bad(real / "loop", "already scanned")
    (gen / "empty_model").mkdir()
    plant_bad(gen / "empty_model", "empty model folder")
    (gen / "only_bad").mkdir()
    (gen / "only_bad" / "x.png").write_bytes(b"")
    plant_bad(gen / "only_bad", "no usable image")
    planted[str(gen / "only_bad" / "x.png")] = "empty file"
    plant_bad(gen / "loose.png", "not inside a model sub-folder", (real / "img002.png").read_bytes())
    (gen / "models.yaml").write_text((gen / "models.yaml").read_text() + "  m_ghost: {family: GAN}\n")
    planted[str(gen / "models.yaml")] = "entry 'm_ghost' has no model folder"
    outs = {}
    for name, (r_, g_) in {"clean": clean, "dirty": (real, gen)}.items():
        out = tmp_path / f"art-{name}"
        res = _cli("artifacts", "--real", r_, "--generated", g_, "--out", out, "--shard-size", "7", "--quiet")
        assert res.exit_code == 0, res.output
        outs[name] = out
    reported = {b.path: b.reason for b in ArtifactStore(outs["dirty"]).bad_files()}
    for path, why in planted.items():
        assert path in reported, f"{path} not reported"
        assert why in reported[path], (path, reported[path])
    assert set(reported) == set(planted)
    assert not ArtifactStore(outs["clean"]).bad_files()
    a, b = ArtifactStore(outs["clean"]), ArtifactStore(outs["dirty"])
    assert a.table() == b.table()
    np.testing.assert_array_equal(a.artifacts(), b.artifacts())
    assert {k: v for k, v in a.summarise().items() if k != "bad_files"} == \
           {k: v for k, v in b.summarise().items() if k != "bad_files"}
    # fit on the corpus: the same numbers as on the good files alone
    res = {}
    for name, (r_, g_) in {"clean": clean, "dirty": (real, gen)}.items():
        out = tmp_path / f"fit-{name}"
        r = _cli("fit", "--real", r_, "--generated", g_, "--out", out, *FIT)
        assert r.exit_code == 0, r.output
        res[name] = json.loads((out / "results.json").read_text())
    assert res["clean"] == res["dirty"]


def _png(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def test_disk_full_mid_run_is_a_message_and_the_rerun_is_byte_identical(small, tmp_path: Path, monkeypatch) -> None:
    import manifpt.store as store

    real, gen = small
    args = ["artifacts", "--real", real, "--generated", gen, "--shard-size", "4", "--quiet"]
    assert _cli(*args, "--out", tmp_path / "ref").exit_code == 0
    writes = {"n": 0}
    real_write = store.atomic_write_bytes

    def filling_disk(path, data):  # the fourth shard finds the disk full
        writes["n"] += 1
        if writes["n"] == 4:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_write(path, data)

    monkeypatch.setattr(store, "atomic_write_bytes", filling_disk)
    out = tmp_path / "out"
    _one_message(_cli(*args, "--out", out), 1, "No space left on device")
    assert not (out / "complete.json").exists() and not list((out / "shards").glob(".*.tmp*"))
    monkeypatch.setattr(store, "atomic_write_bytes", real_write)
    assert _cli(*args, "--out", out).exit_code == 0
    assert _files(out) == _files(tmp_path / "ref")
