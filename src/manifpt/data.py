"""Image sets on disk: scanning, decoding, bad-file reporting, batching.

A forensic tool must not silently change pixels or silently drop files, so this module is strict:
every file under a folder is opened once at scan time (bytes hashed, image fully decoded), files that
cannot be used are listed with the reason, and the rest get one well-defined conversion to uint8
RGB (or 1-channel when the whole set is grayscale). Resizing happens only when asked, because
resampling erases exactly the high-frequency traces that fingerprints are made of.

Two sources share one small protocol (``ImageSource``): ``ImageSet`` (a folder of files) and
``ArraySource`` (an in-memory uint8 array). Both give ``len``, ``shape``, ``load(indices)``,
``iter_batches`` and a content ``fingerprint`` used as a cache key.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import os
import stat
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import yaml
from PIL import Image, ImageFile, UnidentifiedImageError

from .errors import DataError, UnknownNameError, UsageError, display
from .progress import STAGES, progress

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})
#: Pillow's own default limit; above it a file is treated as a decompression bomb.
DEFAULT_MAX_PIXELS = 89_478_485
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
#: Decoded sets up to this many bytes stay in memory after the scan, so they are decoded only once.
IN_MEMORY_BYTES = 512 * 2**20


class BadImageError(ValueError):
    """A file that cannot be used as an image; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


@dataclass(frozen=True)
class BadFile:
    path: str
    reason: str


# --------------------------------------------------------------------------- decoding


#: pixels converted per step when reducing bit depth: bounds the temporaries, whatever the image size
_CHUNK = 1 << 20


def _chunked_uint8(arr: np.ndarray, fn) -> np.ndarray:
    """Apply ``fn`` (values → uint8) in chunks of ``_CHUNK`` pixels into one preallocated uint8 array."""
    out = np.empty(arr.shape, np.uint8)
    src, dst = arr.reshape(-1), out.reshape(-1)
    for lo in range(0, src.size, _CHUNK):
        dst[lo:lo + _CHUNK] = fn(src[lo:lo + _CHUNK])
    return out


def _u16_to_u8(x: np.ndarray) -> np.ndarray:
    # round(x · 255/65535) = round(x / 257) = (x + 128) // 257 exactly: x/257 is never a tie
    return ((np.clip(x, 0, 65535).astype(np.uint32) + 128) // 257).astype(np.uint8)


def _float_to_u8(x: np.ndarray, scale: float) -> np.ndarray:
    return np.clip(np.rint(np.nan_to_num(x.astype(np.float64) * scale)), 0, 255).astype(np.uint8)


def _to_uint8(im: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to uint8 H×W (gray) or H×W×3 (colour) with explicit, documented rules.

    - 16/32-bit integer gray (``I;16*``, ``I``): scaled by 255/65535 and rounded (not truncated), in
      integer arithmetic a chunk at a time (a 9000² 16-bit image costs its own 162 MB plus 81 MB out,
      not a float64 copy).
    - float gray (``F``): values in [0, 1] are scaled by 255, otherwise clipped to [0, 255].
    - alpha (``RGBA``, ``LA``, ``PA``, palette with transparency): composited over white.
    - ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``, palette: Pillow's conversion to RGB.
    """
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        return _chunked_uint8(np.asarray(im), _u16_to_u8)
    if mode == "F":
        arr = np.asarray(im)
        scale = 255.0 if np.nanmax(arr) <= 1.0 else 1.0
        return _chunked_uint8(arr, lambda x: _float_to_u8(x, scale))
    if mode == "1":
        return np.asarray(im.convert("L"))
    if mode == "L":
        return np.asarray(im)
    if mode in ("LA", "PA", "RGBA", "La", "RGBa"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        out = Image.alpha_composite(white, rgba)
        return np.asarray(out.convert("L" if mode == "LA" else "RGB"))
    return np.asarray(im.convert("RGB"))


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_problem(data: bytes) -> str | None:
    """Why a PNG's compressed data cannot hold every row it declares (``None`` if it can).

    Pillow decodes a PNG whose zlib stream ends early and fills the missing rows with zeros, without
    an error; a forensic tool must not read those zeros as pixels. The check inflates the IDAT stream
    once, counting bytes without keeping them (memory stays bounded whatever the declared size),
    and compares with the scanline bytes the header implies (Adam7 passes included).
    """
    pos, idat, ihdr = 8, [], None
    while pos + 8 <= len(data):
        n, tag = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        if tag == b"IHDR":
            ihdr = body
        elif tag == b"IDAT":
            idat.append(body)
        elif tag == b"IEND":
            break
        pos += 12 + n
    if ihdr is None or len(ihdr) < 13:
        return None  # Pillow reports a malformed header itself
    w, h = int.from_bytes(ihdr[0:4], "big"), int.from_bytes(ihdr[4:8], "big")
    depth, colour, interlace = ihdr[8], ihdr[9], ihdr[12]
    bpp = depth * _PNG_CHANNELS.get(colour, 4)
    def rows(pw: int, ph: int) -> int:
        return ph * (1 + (pw * bpp + 7) // 8) if pw > 0 and ph > 0 else 0
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    need = sum(rows(-(-(w - x0) // dx), -(-(h - y0) // dy)) for x0, y0, dx, dy in passes)
    d, got = zlib.decompressobj(), 0
    try:
        for chunk in idat:
            buf = chunk
            while buf and got < need:
                got += len(d.decompress(buf, 1 << 20))
                buf = d.unconsumed_tail
            if got >= need:
                break
        while got < need and not d.eof:
            part = d.flush(1 << 20)
            if not part:
                break
            got += len(part)
    except zlib.error as e:
        return f"corrupt compressed image data ({e})"
    if got < need:
        return (f"incomplete image data: declares {w}x{h} but its compressed data holds only "
                f"{got} of {need} bytes of rows (file cut or damaged)")
    return None


def decode_bytes(
    data: bytes,
    path: str | Path = "<bytes>",
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode one encoded image to uint8 (H×W or H×W×3); raise ``BadImageError`` with the reason.

    Strict: the declared size is checked against ``max_pixels`` before anything is decoded, a PNG
    must hold every row it declares, truncated data is an error (Pillow's ``LOAD_TRUNCATED_IMAGES``
    is never consulted), and the decoded array must have the declared size.
    """
    if len(data) == 0:
        raise BadImageError(path, "empty file (0 bytes)")
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # another library may have switched zero-filling on
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > max_pixels:
                raise BadImageError(path, f"decompression bomb: {w}x{h} = {w * h} pixels > limit {max_pixels}")
            if im.format == "PNG" and (problem := _png_problem(data)):
                raise BadImageError(path, problem)
            im.load()
        except BadImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise BadImageError(path, f"decompression bomb: {e}") from None
        except UnidentifiedImageError:
            raise BadImageError(path, "not a recognised image (Pillow cannot identify it)") from None
        except (OSError, SyntaxError, ValueError, EOFError, zlib.error) as e:
            raise BadImageError(path, f"truncated or corrupt image data ({e})") from None
    if getattr(im, "n_frames", 1) > 1:
        im.seek(0)
    try:
        arr = _to_uint8(im)
    except (OSError, ValueError) as e:
        raise BadImageError(path, f"cannot convert mode {im.mode} to RGB ({e})") from None
    if arr.shape[:2] != (h, w):
        raise BadImageError(path, f"decoded {arr.shape[1]}x{arr.shape[0]} pixels, the file declares {w}x{h}")
    return arr


def fit_channels(arr: np.ndarray, channels: int) -> np.ndarray:
    """Gray → RGB by replication, or RGB → gray (ITU-R 601-2 luma, as Pillow's ``convert('L')``)."""
    if channels == 3 and arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=-1)
    if channels == 1 and arr.ndim == 3:
        return np.asarray(Image.fromarray(arr).convert("L"))
    return arr


def resize_uint8(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to (height, width) with Pillow's antialiased bicubic filter."""
    h, w = size
    if arr.shape[:2] == (h, w):
        return arr
    return np.asarray(Image.fromarray(arr).resize((w, h), Image.Resampling.BICUBIC))


def check_reencode(spec: str | None) -> str | None:
    """``spec`` if it names one lossy re-encoding (``jpeg:Q`` or ``webp:Q``), else a clear error."""
    if spec is None:
        return None
    from .perturb import parse_spec

    ps = parse_spec(spec)
    if len(ps) != 1 or ps[0].kind not in ("jpeg", "webp"):
        raise UsageError(f"--reencode {spec}: give one format and quality, jpeg:Q or webp:Q (e.g. jpeg:90); "
                         "a lossless format (PNG) would leave the pixels as they are")
    return ps[0].name


def reencode_uint8(arr: np.ndarray, spec: str) -> np.ndarray:
    """``arr`` encoded as ``spec`` (``jpeg:Q`` / ``webp:Q``) and decoded again."""
    from .perturb import parse_spec

    return parse_spec(spec)[0].apply(arr, np.random.default_rng(0))


def pixel_digests(images: np.ndarray) -> np.ndarray:
    """16-byte digest of each image's decoded pixels (shape included), as uint8 N×16."""
    shape = repr(images.shape[1:]).encode()
    digests = b"".join(hashlib.blake2b(shape + np.ascontiguousarray(im).tobytes(), digest_size=16).digest()
                       for im in images)
    return np.frombuffer(digests, np.uint8).reshape(len(images), 16)


# --------------------------------------------------------------------------- sources


@runtime_checkable
class ImageSource(Protocol):
    """What every stage downstream of ``data`` needs from a set of images."""

    shape: tuple[int, ...]  # (H, W) or (H, W, 3)

    def __len__(self) -> int: ...
    def load(self, indices: Sequence[int] | np.ndarray) -> np.ndarray: ...
    def fingerprint(self) -> str: ...


def iter_batches(
    source: ImageSource, batch_size: int, *, start: int = 0, stop: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(offset, uint8 batch)`` over ``source[start:stop]`` without holding more than one batch."""
    stop = len(source) if stop is None else stop
    for lo in range(start, stop, batch_size):
        yield lo, source.load(np.arange(lo, min(lo + batch_size, stop)))


def as_source(images: ImageSource | np.ndarray) -> ImageSource:
    """Accept either an ``ImageSource`` or a uint8 array of N×H×W(×C) images."""
    return images if isinstance(images, ImageSource) else ArraySource(images)


class ArraySource:
    """An in-memory uint8 N×H×W or N×H×W×C array seen through the ``ImageSource`` protocol."""

    def __init__(self, images: np.ndarray):
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise TypeError(f"images must be uint8 (got {images.dtype}); scale to 0..255 first")
        if images.ndim == 4 and images.shape[-1] == 1:
            images = images[..., 0]
        if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
            raise ValueError(f"images must be N×H×W or N×H×W×3, got shape {images.shape}")
        self.images = images
        self.shape = tuple(images.shape[1:])
        self._fp: str | None = None

    def __len__(self) -> int:
        return len(self.images)

    def load(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        return self.images[np.asarray(indices, dtype=np.int64)]

    def fingerprint(self) -> str:
        if self._fp is None:
            h = hashlib.blake2b(digest_size=16)
            h.update(repr((self.images.shape, str(self.images.dtype))).encode())
            h.update(np.ascontiguousarray(self.images).data)
            self._fp = h.hexdigest()
        return self._fp


@dataclass
class _Scanned:
    rel: str
    digest: str
    mode: str
    size: tuple[int, int]  # (H, W)
    pixels: np.ndarray | None


def _scan_one(path: Path, root: Path, max_pixels: int, keep: bool) -> _Scanned | BadFile:
    rel = path.relative_to(root).as_posix()
    try:
        data = path.read_bytes()
        arr = decode_bytes(data, path, max_pixels=max_pixels)
    except BadImageError as e:
        return BadFile(str(path), e.reason)
    except OSError as e:
        return BadFile(str(path), f"cannot read file ({e.strerror or e})")
    mode = "L" if arr.ndim == 2 else "RGB"
    return _Scanned(rel, hashlib.blake2b(data, digest_size=16).hexdigest(), mode, arr.shape[:2],
                    arr if keep else None)


def generated_root_extra(name: str, is_dir: bool) -> bool:
    """What a generated folder may hold beside its model folders without a report: non-image files
    (``models.yaml``, the zoo's ``timings.json``, a README) and folders named ``_*`` (tools' own work,
    e.g. the zoo's ``_train/`` checkpoints). Images there are still reported as outside a model folder."""
    return name.startswith("_") if is_dir else Path(name).suffix.lower() not in Image.registered_extensions()


#: the provenance file ``manifpt data`` writes beside the images of a real set (never reported)
REAL_SOURCE_FILE = "source.json"


def real_root_extra(name: str, is_dir: bool) -> bool:
    """What a real folder may hold beside its images without a report: manifpt's own ``source.json``."""
    return not is_dir and name == REAL_SOURCE_FILE


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"))


def not_regular(mode: int) -> str | None:
    """What a non-regular file is (it is never opened: reading a FIFO would block forever)."""
    if stat.S_ISREG(mode):
        return None
    return next((f"not a regular file ({what}); never opened" for test, what in _KINDS if test(mode)),
                "not a regular file; never opened")


def _extension_problem(path: Path) -> str | None:
    ext = path.suffix.lower()
    if ext in IMAGE_EXTS:
        return None
    supported = ", ".join(sorted(IMAGE_EXTS))
    if ext in Image.registered_extensions():
        return f"image format '{ext}' is not supported (supported: {supported}); convert it to PNG"
    return f"not an image file (extension '{ext or 'none'}'); ignored"


def find_images(root: str | Path, ignore: Callable[[str, bool], bool] | None = None
                ) -> tuple[list[Path], list[BadFile]]:
    """Every regular image file under ``root``, sorted by relative path, and every entry left out, with why.

    Links to folders are followed once (a folder reached twice, e.g. through a link loop, is reported);
    dangling links, link loops, FIFOs, sockets and devices, unreadable folders and files with other
    extensions are reported, never silently dropped; FIFOs are never opened. ``ignore(name, is_dir)``:
    entries directly under ``root`` that are expected there and are skipped without a report.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder" if root.exists() else f"{root}: no such folder")
    files: list[Path] = []
    bad: list[BadFile] = []
    seen: set[tuple[int, int]] = set()

    def walk(folder: Path) -> None:
        st = folder.stat()
        if (st.st_dev, st.st_ino) in seen:
            bad.append(BadFile(str(folder), "link to a folder that is already scanned (a link loop or a second "
                                            "path to it); skipped"))
            return
        seen.add((st.st_dev, st.st_ino))
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            bad.append(BadFile(str(folder), f"cannot read folder ({e.strerror or e}); its files are left out"))
            return
        for e in entries:
            path = Path(e.path)
            try:
                if e.is_dir(follow_symlinks=True):
                    if not (folder == root and ignore is not None and ignore(e.name, True)):
                        walk(path)
                    continue
                mode = e.stat(follow_symlinks=True).st_mode
            except FileNotFoundError:
                bad.append(BadFile(str(path), f"dangling link (to {os.readlink(path)}, which does not exist)"))
                continue
            except OSError as err:
                what = "link loop" if err.errno == errno.ELOOP else f"cannot stat ({err.strerror or err})"
                bad.append(BadFile(str(path), what))
                continue
            if folder == root and ignore is not None and ignore(e.name, False):
                continue
            problem = not_regular(mode) or _extension_problem(path)
            (bad.append(BadFile(str(path), problem)) if problem else files.append(path))

    walk(root)
    files.sort(key=lambda p: p.relative_to(root).as_posix())
    return files, bad


def list_image_files(root: str | Path) -> list[Path]:
    """All regular files under ``root`` with an image extension, sorted by relative path (deterministic)."""
    return find_images(root)[0]


@dataclass
class ImageSet:
    """A verified folder of images with one common shape.

    Build it with ``ImageSet.from_folder``; ``bad`` lists every file that was skipped and why.
    ``channels`` is 1 when every image is grayscale (unless forced), else 3.
    """

    root: Path
    rel_paths: list[str]
    digests: list[str]
    shape: tuple[int, ...]
    resize: tuple[int, int] | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    bad: list[BadFile] = field(default_factory=list)
    workers: int = 8
    _pixels: np.ndarray | None = field(default=None, repr=False)
    #: every image re-encoded this way after decoding (``jpeg:Q`` / ``webp:Q``): a format-matched set
    reencode: str | None = None

    # -- construction -----------------------------------------------------------------
    @classmethod
    def from_folder(
        cls,
        root: str | Path,
        *,
        size: int | tuple[int, int] | None = None,
        channels: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        workers: int | None = None,
        show_progress: bool = True,
        files: Sequence[Path] | None = None,
        reencode: str | None = None,
    ) -> ImageSet:
        """Scan (hash + fully decode) every image file under ``root``.

        reencode: ``jpeg:Q`` or ``webp:Q``: every image re-encoded so after decoding (and resizing),
        so that real and generated images carry the same format's traces (``check_reencode``).

        size: target (H, W) or an int for square; ``None`` keeps native size and skips images whose
        size differs from the most common one (they are reported, never silently resized).
        channels: 1 or 3; ``None`` picks 1 only when every image is grayscale.
        """
        root = Path(root)
        reencode = check_reencode(reencode)  # a bad spec fails before any file is read
        listed: list[BadFile] = []
        if files is None:
            files, listed = find_images(root, ignore=real_root_extra)
        else:
            files = list(files)
        workers = workers or min(16, 2 * (os.cpu_count() or 2))
        resize = (size, size) if isinstance(size, int) else (tuple(size) if size else None)
        keep = True
        scanned: list[_Scanned] = []
        bad: list[BadFile] = list(listed)
        kept_bytes = 0
        bar = progress(total=len(files), desc=f"scan {root.name or root}", disable=not show_progress)
        with ThreadPoolExecutor(workers) as pool, bar, STAGES("decode", len(files)):
            for lo in range(0, len(files), 1024):  # chunks bound the decoded pixels held at once
                chunk = files[lo:lo + 1024]
                for r in pool.map(_scan_one, chunk, repeat(root), repeat(max_pixels), repeat(keep)):
                    bar.update(1)
                    if isinstance(r, BadFile):
                        bad.append(r)
                        continue
                    if keep and r.pixels is not None:
                        kept_bytes += r.pixels.nbytes if resize is None else resize[0] * resize[1] * 3
                        if kept_bytes > IN_MEMORY_BYTES:
                            keep = False
                            for s in scanned:
                                s.pixels = None
                    if not keep:
                        r.pixels = None
                    scanned.append(r)
        if not scanned:
            first = f"; first: {display(bad[0].path)}: {bad[0].reason}" if bad else ""
            raise DataError(f"{root}: no usable images ({len(files)} image files, {len(bad)} skipped{first})")
        if channels is None:
            channels = 1 if all(s.mode == "L" for s in scanned) else 3
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        if resize is None:
            common = Counter(s.size for s in scanned).most_common(1)[0][0]
            ok = []
            for s in scanned:
                if s.size == common:
                    ok.append(s)
                else:
                    bad.append(BadFile(str(root / s.rel),
                                       f"size {s.size[1]}x{s.size[0]} differs from the set's common size "
                                       f"{common[1]}x{common[0]} (pass a size to resize)"))
            scanned, hw = ok, common
        else:
            hw = resize
        shape = hw if channels == 1 else (*hw, 3)
        out = cls(root, [s.rel for s in scanned], [s.digest for s in scanned], tuple(shape), resize,
                  max_pixels, sorted(bad, key=lambda b: b.path), workers, reencode=reencode)
        if keep:
            out._pixels = np.stack([out._convert(s.pixels) for s in scanned])
        return out

    # -- protocol ---------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.rel_paths)

    @property
    def channels(self) -> int:
        return 1 if len(self.shape) == 2 else 3

    @property
    def paths(self) -> list[Path]:
        return [self.root / r for r in self.rel_paths]

    def _convert(self, arr: np.ndarray) -> np.ndarray:
        arr = fit_channels(arr, self.channels)
        arr = resize_uint8(arr, self.resize) if self.resize else arr
        return reencode_uint8(arr, self.reencode) if self.reencode else arr

    def _decode(self, i: int) -> np.ndarray:
        path = self.root / self.rel_paths[i]
        arr = self._convert(decode_bytes(path.read_bytes(), path, max_pixels=self.max_pixels))
        if arr.shape != self.shape:
            raise BadImageError(path, f"shape {arr.shape} changed since the scan (expected {self.shape})")
        return arr

    def load(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64)
        if self._pixels is not None:
            return self._pixels[idx]
        out = np.empty((len(idx), *self.shape), np.uint8)
        if len(idx) == 0:
            return out
        with ThreadPoolExecutor(min(self.workers, len(idx))) as pool, STAGES("decode", len(idx)):
            for j, arr in enumerate(pool.map(self._decode, idx.tolist())):
                out[j] = arr
        return out

    def fingerprint(self) -> str:
        """Content hash of the set: relative paths, file digests and the conversion settings."""
        h = hashlib.blake2b(digest_size=16)
        h.update(repr((self.shape, self.resize) if self.reencode is None else
                      (self.shape, self.resize, self.reencode)).encode())
        for rel, dig in zip(self.rel_paths, self.digests, strict=True):
            h.update(f"{rel}\0{dig}\n".encode("utf-8", "surrogateescape"))
        return h.hexdigest()

    def with_channels(self, channels: int) -> ImageSet:
        """The same files converted to ``channels`` (used to make a real and a generated set agree)."""
        if channels == self.channels:
            return self
        hw = self.shape[:2]
        pix = None
        if self._pixels is not None:
            pix = np.stack([fit_channels(a, channels) for a in self._pixels])
        return ImageSet(self.root, self.rel_paths, self.digests, hw if channels == 1 else (*hw, 3),
                        self.resize, self.max_pixels, self.bad, self.workers, pix, self.reencode)

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageSet:
        idx = np.asarray(indices, dtype=np.int64)
        return ImageSet(self.root, [self.rel_paths[i] for i in idx], [self.digests[i] for i in idx],
                        self.shape, self.resize, self.max_pixels, list(self.bad), self.workers,
                        None if self._pixels is None else self._pixels[idx], self.reencode)


def match_channels(*sets: ImageSet) -> list[ImageSet]:
    """Convert sets to a common channel count: 1 only if every set is grayscale."""
    c = max(s.channels for s in sets)
    return [s.with_channels(c) for s in sets]


# --------------------------------------------------------------------------- generated sets


@dataclass
class GeneratedSet:
    """``GENERATED/<model>/**/*``: an ``ImageSet`` plus each image's model and the models' factors."""

    images: ImageSet
    models: list[str]  # per image
    factors: dict[str, dict[str, str]]  # model -> {factor: value}

    @classmethod
    def from_folder(cls, root: str | Path, **kwargs) -> GeneratedSet:
        """Scan ``root/<model>/**``; everything that is left out or suspicious lands in ``images.bad``.

        Reported by path: files outside a model folder, empty model folders and ones whose files are
        all bad (the model is left out), models.yaml entries without a folder, and the same image
        (same bytes) in two model folders (kept in both, since the folders say so, but flagged).
        """
        root = Path(root)
        factors = load_factors(root)
        files, listed = find_images(root, ignore=generated_root_extra)
        loose = [p for p in files if len(p.relative_to(root).parts) < 2]
        listed += [BadFile(str(p), "not inside a model sub-folder GENERATED/<model>/") for p in loose]
        inside = [p for p in files if len(p.relative_to(root).parts) >= 2]
        folders = sorted(e.name for e in os.scandir(root)
                         if e.is_dir(follow_symlinks=True) and not generated_root_extra(e.name, True))
        if not inside:
            raise DataError(f"{root}: no image files inside model folders GENERATED/<model>/ "
                            f"({len(folders)} folder(s), {len(loose)} loose file(s))")
        images = ImageSet.from_folder(root, files=inside, **kwargs)
        models = [r.split("/", 1)[0] for r in images.rel_paths]
        found = set(models)
        per_folder = Counter(p.relative_to(root).parts[0] for p in inside)
        for m in folders:
            if m not in found:
                n = per_folder[m]
                why = (f"model folder with no usable image ({n} file(s), all skipped); model left out" if n
                       else "empty model folder (no image files); model left out")
                listed.append(BadFile(str(root / m), why))
        manifest = next((root / n for n in ("models.yaml", "models.yml", "models.csv") if (root / n).exists()), None)
        for m in sorted(set(factors) - set(folders)):
            listed.append(BadFile(str(manifest), f"entry '{m}' has no model folder {root / m}; ignored"))
        first: dict[str, int] = {}
        for i, dig in enumerate(images.digests):
            j = first.setdefault(dig, i)
            if j != i and models[j] != models[i]:
                listed.append(BadFile(str(root / images.rel_paths[i]),
                                      f"same bytes as {images.rel_paths[j]} (model {models[j]}): one image, two "
                                      "labels; kept in both"))
        images.bad = sorted(images.bad + listed, key=lambda b: b.path)
        factors = {m: factors.get(m, {}) for m in sorted(found)}
        return cls(images, models, factors)

    @property
    def model_names(self) -> list[str]:
        return sorted(set(self.models))

    def select_models(self, names: Sequence[str]) -> GeneratedSet:
        """The images of the given models only (unknown names are an error)."""
        missing = sorted(set(names) - set(self.models))
        if missing:
            raise UnknownNameError(f"model folder in {self.images.root}", missing[0], self.model_names)
        keep = [i for i, m in enumerate(self.models) if m in set(names)]
        return GeneratedSet(self.images.subset(keep), [self.models[i] for i in keep],
                            {m: f for m, f in self.factors.items() if m in set(names)})

    def labels(self, target: str = "model") -> list[str]:
        """Per-image value of ``target`` ('model' or any factor column); missing values raise."""
        if target == "model":
            return list(self.models)
        if target not in self.factor_names():
            raise UnknownNameError("target", target, ["model", *self.factor_names()])
        missing = sorted({m for m in self.models if target not in self.factors.get(m, {})})
        if missing:
            raise DataError(f"{self.images.root}: factor '{target}' is not given for model(s) {', '.join(missing)} "
                            "in models.yaml")
        return [str(self.factors[m][target]) for m in self.models]

    def factor_names(self) -> list[str]:
        names: set[str] = set()
        for f in self.factors.values():
            names.update(f)
        return sorted(names)


def load_factors(root: str | Path) -> dict[str, dict[str, str]]:
    """Read ``models.yaml`` (``{models: {name: {factor: value}}}``, ``{name: {...}}`` or a list of
    ``{name: ..., factor: value}``) or ``models.csv`` (a ``model`` or ``name`` column); ``{}`` if neither.

    Malformed files raise ``DataError`` naming the file and the expected shape; YAML is read with
    ``safe_load`` (tags that construct objects are refused).
    """
    root = Path(root)
    shape = "expected 'models: {<model>: {<factor>: <value>, ...}, ...}'"
    for name in ("models.yaml", "models.yml"):
        p = root / name
        if not p.exists():
            continue
        try:
            doc = yaml.safe_load(p.read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            where = getattr(e, "problem_mark", None)
            at = f" at line {where.line + 1}" if where is not None else ""
            raise DataError(f"{p}: not readable YAML{at} ({getattr(e, 'problem', None) or e}); {shape}") from None
        if isinstance(doc, dict) and set(doc) == {"models"}:
            doc = doc["models"] or {}
        if isinstance(doc, list):
            if not all(isinstance(d, dict) and "name" in d for d in doc):
                raise DataError(f"{p}: a list of models needs a 'name' in every entry; {shape}")
            doc = {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in doc}
        if not isinstance(doc, dict):
            raise DataError(f"{p}: top level is a {type(doc).__name__}; {shape}")
        out: dict[str, dict[str, str]] = {}
        for m, f in doc.items():
            if f is not None and not isinstance(f, dict):
                raise DataError(f"{p}: model '{m}' maps to a {type(f).__name__} ({f!r}), not to factors; {shape}")
            bad = [k for k, v in (f or {}).items() if isinstance(v, (dict, list))]
            if bad:
                raise DataError(f"{p}: factor '{bad[0]}' of model '{m}' is not a single value; {shape}")
            out[str(m)] = {str(k): _scalar(v) for k, v in (f or {}).items()}
        return out
    p = root / "models.csv"
    if p.exists():
        try:
            with p.open(newline="") as fh:
                rows = list(csv.DictReader(fh))
        except (csv.Error, UnicodeDecodeError) as e:
            raise DataError(f"{p}: not a readable CSV file ({e})") from None
        if not rows:
            return {}
        key = "model" if "model" in rows[0] else "name" if "name" in rows[0] else None
        if key is None or any(not r.get(key) for r in rows) or any(None in r for r in rows):
            raise DataError(f"{p}: needs a 'model' column with a value in every row and no extra fields "
                            f"(header: {', '.join(k for k in rows[0] if k)})")
        return {r[key]: {k: v or "" for k, v in r.items() if k != key} for r in rows}
    return {}


def _scalar(v: object) -> str:
    return v if isinstance(v, str) else str(v)


def read_image(path: str | Path, channels: int, resize: Sequence[int] | None = None,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode one file with the same conversion an ``ImageSet`` applies."""
    arr = fit_channels(decode_bytes(Path(path).read_bytes(), path, max_pixels=max_pixels), channels)
    return resize_uint8(arr, tuple(resize)) if resize else arr
