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
import hashlib
import io
import os
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import yaml
from PIL import Image, UnidentifiedImageError

from .progress import progress

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


def _to_uint8(im: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to uint8 H×W (gray) or H×W×3 (colour) with explicit, documented rules.

    - 16/32-bit integer gray (``I;16*``, ``I``): scaled by 255/65535 and rounded (not truncated).
    - float gray (``F``): values in [0, 1] are scaled by 255, otherwise clipped to [0, 255].
    - alpha (``RGBA``, ``LA``, ``PA``, palette with transparency): composited over white.
    - ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``, palette: Pillow's conversion to RGB.
    """
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(im).astype(np.float64)
        return np.clip(np.rint(arr * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        if np.nanmax(arr) <= 1.0:
            arr = arr * 255.0
        return np.clip(np.rint(np.nan_to_num(arr)), 0, 255).astype(np.uint8)
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


def decode_bytes(
    data: bytes,
    path: str | Path = "<bytes>",
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode one encoded image to uint8 (H×W or H×W×3); raise ``BadImageError`` with the reason."""
    if len(data) == 0:
        raise BadImageError(path, "empty file (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > max_pixels:
                raise BadImageError(path, f"decompression bomb: {w}x{h} = {w * h} pixels > limit {max_pixels}")
            im.load()
        except BadImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise BadImageError(path, f"decompression bomb: {e}") from None
        except UnidentifiedImageError:
            raise BadImageError(path, "not a recognised image (Pillow cannot identify it)") from None
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise BadImageError(path, f"truncated or corrupt image data ({e})") from None
    if getattr(im, "n_frames", 1) > 1:
        im.seek(0)
    try:
        return _to_uint8(im)
    except (OSError, ValueError) as e:
        raise BadImageError(path, f"cannot convert mode {im.mode} to RGB ({e})") from None


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


def list_image_files(root: str | Path) -> list[Path]:
    """All files under ``root`` with an image extension, sorted by relative path (deterministic)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory")
    files = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


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
    ) -> ImageSet:
        """Scan (hash + fully decode) every image file under ``root``.

        size: target (H, W) or an int for square; ``None`` keeps native size and skips images whose
        size differs from the most common one (they are reported, never silently resized).
        channels: 1 or 3; ``None`` picks 1 only when every image is grayscale.
        """
        root = Path(root)
        files = list_image_files(root) if files is None else list(files)
        workers = workers or min(16, 2 * (os.cpu_count() or 2))
        resize = (size, size) if isinstance(size, int) else (tuple(size) if size else None)
        keep = True
        scanned: list[_Scanned] = []
        bad: list[BadFile] = []
        kept_bytes = 0
        bar = progress(total=len(files), desc=f"scan {root.name or root}", disable=not show_progress)
        with ThreadPoolExecutor(workers) as pool, bar:
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
            raise ValueError(f"{root}: no usable images ({len(files)} files, {len(bad)} bad)")
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
                  max_pixels, sorted(bad, key=lambda b: b.path), workers)
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
        return resize_uint8(arr, self.resize) if self.resize else arr

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
        with ThreadPoolExecutor(min(self.workers, len(idx))) as pool:
            for j, arr in enumerate(pool.map(self._decode, idx.tolist())):
                out[j] = arr
        return out

    def fingerprint(self) -> str:
        """Content hash of the set: relative paths, file digests and the conversion settings."""
        h = hashlib.blake2b(digest_size=16)
        h.update(repr((self.shape, self.resize)).encode())
        for rel, dig in zip(self.rel_paths, self.digests, strict=True):
            h.update(f"{rel}\0{dig}\n".encode())
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
                        self.resize, self.max_pixels, self.bad, self.workers, pix)

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageSet:
        idx = np.asarray(indices, dtype=np.int64)
        return ImageSet(self.root, [self.rel_paths[i] for i in idx], [self.digests[i] for i in idx],
                        self.shape, self.resize, self.max_pixels, list(self.bad), self.workers,
                        None if self._pixels is None else self._pixels[idx])


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
        root = Path(root)
        files = list_image_files(root)
        loose = [p for p in files if len(p.relative_to(root).parts) < 2]
        images = ImageSet.from_folder(root, files=[p for p in files if p not in set(loose)], **kwargs)
        images.bad.extend(BadFile(str(p), "not inside a model sub-folder GENERATED/<model>/") for p in loose)
        models = [r.split("/", 1)[0] for r in images.rel_paths]
        factors = load_factors(root)
        for m in sorted(set(models)):
            factors.setdefault(m, {})
        return cls(images, models, factors)

    @property
    def model_names(self) -> list[str]:
        return sorted(set(self.models))

    def select_models(self, names: Sequence[str]) -> GeneratedSet:
        """The images of the given models only (unknown names are an error)."""
        missing = sorted(set(names) - set(self.models))
        if missing:
            raise KeyError(f"{self.images.root}: no model folder(s) {', '.join(missing)}")
        keep = [i for i, m in enumerate(self.models) if m in set(names)]
        return GeneratedSet(self.images.subset(keep), [self.models[i] for i in keep],
                            {m: f for m, f in self.factors.items() if m in set(names)})

    def labels(self, target: str = "model") -> list[str]:
        """Per-image value of ``target`` ('model' or any factor column); missing values raise."""
        if target == "model":
            return list(self.models)
        missing = sorted({m for m in self.models if target not in self.factors.get(m, {})})
        if missing:
            raise KeyError(f"factor '{target}' is not given for model(s) {', '.join(missing)} in models.yaml")
        return [str(self.factors[m][target]) for m in self.models]

    def factor_names(self) -> list[str]:
        names: set[str] = set()
        for f in self.factors.values():
            names.update(f)
        return sorted(names)


def load_factors(root: str | Path) -> dict[str, dict[str, str]]:
    """Read ``models.yaml`` (``{models: {name: {factor: value}}}`` or ``{name: {...}}``) or ``models.csv``."""
    root = Path(root)
    for name in ("models.yaml", "models.yml"):
        p = root / name
        if p.exists():
            doc = yaml.safe_load(p.read_text()) or {}
            doc = doc.get("models", doc)
            if isinstance(doc, list):
                doc = {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in doc}
            if not isinstance(doc, dict):
                raise ValueError(f"{p}: expected a mapping of model name -> factors")
            return {str(m): {str(k): _scalar(v) for k, v in (f or {}).items()} for m, f in doc.items()}
    p = root / "models.csv"
    if p.exists():
        with p.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        key = "model" if rows and "model" in rows[0] else "name"
        return {r[key]: {k: v for k, v in r.items() if k != key} for r in rows}
    return {}


def _scalar(v: object) -> str:
    return v if isinstance(v, str) else str(v)


def read_image(path: str | Path, channels: int, resize: Sequence[int] | None = None,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode one file with the same conversion an ``ImageSet`` applies."""
    arr = fit_channels(decode_bytes(Path(path).read_bytes(), path, max_pixels=max_pixels), channels)
    return resize_uint8(arr, tuple(resize)) if resize else arr
