"""Real images available offline, for the manifold and for training manifpt's own generative models.

The paper's benchmarks (GM-CIFAR10, GM-CelebA, ...) cannot be downloaded here, so manifpt builds its
own from real images that ship with installed packages:

- **Fashion-MNIST** (uint8 N×28×28) from the Debian package ``dataset-fashion-mnist`` (idx files under
  ``/usr/share/datasets/fashion-mnist``); torchvision's downloader is the online fallback.
- **Photo patches** (uint8 N×32×32×3): seeded crops of real photographs from scikit-image and
  scikit-learn (always present) plus, when installed, a curated list of the real photographs in the
  Debian package ``opencv-doc`` and the nature photographs of ``mate-backgrounds``.

A training-set attribution experiment needs at least two real training sets of one shape, so every
source is also available as two disjoint halves: ``photos-a`` / ``photos-b`` split the *source
photographs* (no photograph contributes to both), ``fmnist-a`` / ``fmnist-b`` split the Fashion-MNIST
training images into class-stratified seeded halves (same distribution, disjoint images), and
``fmnist-c0-4`` / ``fmnist-c5-9`` split it by class group (different content). ``load_real(name)``
resolves these names; ``prepare_real`` writes one to a folder of PNGs.
"""

from __future__ import annotations

import functools
import gzip
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from .cache import cache_dir, write_json
from .data import REAL_SOURCE_FILE

SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {"train": "train-images-idx3-ubyte.gz", "test": "t10k-images-idx3-ubyte.gz"}
FASHION_MNIST_LABEL_FILES = {"train": "train-labels-idx1-ubyte.gz", "test": "t10k-labels-idx1-ubyte.gz"}
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")

OPENCV_DOC_DIR = Path("/usr/share/doc/opencv-doc/examples")
#: Real colour photographs among opencv-doc's 2,000+ images, curated by eye. Left out: drawings and
#: renders (HappyFish, Blender_Suzanne*, ml, fuzzy/input, chicky), synthetic figures (pic*, cards,
#: gradient, detect_blob, chessboard, sudoku, blox), logos, text (notes, imageText*, scenetext*,
#: text_*), artificially blurred (licenseplate_motion), paintings (starry_night), grayscale sets
#: (left01.., box*, basketball*), tiny crops and masks, and the second image of near-duplicate
#: pairs (aloeR, right, leuvenB, graf3, rubberwhale2, ela_modified) so a scene is never in both halves.
OPENCV_PHOTOS = (
    "alphamat/input_images/plant.jpg", "data/aero1.jpg", "data/aero3.jpg", "data/aloeL.jpg", "data/apple.jpg",
    "data/baboon.jpg", "data/board.jpg", "data/building.jpg", "data/butterfly.jpg", "data/ela_original.jpg",
    "data/fruits.jpg", "data/graf1.png", "data/home.jpg", "data/left.jpg", "data/leuvenA.jpg",
    "data/messi5.jpg", "data/orange.jpg", "data/rubberwhale1.png", "data/squirrel_cls.jpg", "data/stuff.jpg",
    "dnn_superres/butterfly.png", "hfs/data/000.jpg", "hfs/data/001.jpg", "hfs/data/002.jpg",
    "reg/home.png",
)
MATE_NATURE_DIR = Path("/usr/share/backgrounds/mate/nature")
#: Photographs are downscaled (antialiased) so their shorter side is at most this many pixels before
#: cropping: a 32×32 crop of a 2560×1600 wallpaper is nearly flat, one of a 256-pixel version has content.
PHOTO_SHORT_SIDE = 256


# --------------------------------------------------------------------------- idx / Fashion-MNIST


class DatasetUnavailableError(RuntimeError):
    """A real data set is neither installed nor downloadable; the message says how to get it."""


def read_idx(path: str | Path) -> np.ndarray:
    """Parse an idx file (``.gz`` or raw) as used by MNIST / Fashion-MNIST.

    Layout: two zero bytes, a type code (0x08 = uint8), the number of dimensions, then one big-endian
    int32 per dimension, then the data. The magic number and the byte count are checked, so a
    truncated or foreign file raises ``ValueError`` instead of yielding garbage images.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an idx file (bad magic number {raw[:4].hex()})")
    if raw[2] != 0x08:
        raise ValueError(f"{path}: idx type code 0x{raw[2]:02x} is not unsigned byte (0x08)")
    ndim = raw[3]
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: idx header truncated ({ndim} dimensions)")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">i4", count=ndim, offset=4))
    size = int(np.prod(dims))
    if len(raw) - 4 - 4 * ndim != size:
        raise ValueError(f"{path}: idx data has {len(raw) - 4 - 4 * ndim} bytes, header says {dims} = {size}")
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()


def _fashion_mnist_dir(root: str | Path | None) -> Path:
    return Path(root or os.environ.get("MANIFPT_FASHION_MNIST") or FASHION_MNIST_DIR)


def _check_split(split: str) -> None:
    if split not in FASHION_MNIST_FILES:
        raise ValueError(f"split must be 'train' or 'test', got '{split}'")


def load_fashion_mnist(split: str = "train", *, root: str | Path | None = None,
                       download: bool = True) -> np.ndarray:
    """Fashion-MNIST images, uint8 N×28×28 (60,000 train / 10,000 test).

    Read from the Debian package's idx files (``root``, ``$MANIFPT_FASHION_MNIST`` or
    ``/usr/share/datasets/fashion-mnist``); when they are missing, torchvision downloads the set into
    ``$MANIFPT_CACHE/torchvision`` (online only). Raises ``DatasetUnavailableError`` if both fail.
    """
    _check_split(split)
    path = _fashion_mnist_dir(root) / FASHION_MNIST_FILES[split]
    if path.is_file():
        images = read_idx(path)
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise ValueError(f"{path}: expected N×28×28 images, got {images.shape}")
        return images
    return _torchvision_fashion_mnist(split, download)[0]


def load_fashion_mnist_labels(split: str = "train", *, root: str | Path | None = None,
                              download: bool = True) -> np.ndarray:
    """Fashion-MNIST class labels (uint8, 0..9; names in ``FASHION_MNIST_CLASSES``)."""
    _check_split(split)
    path = _fashion_mnist_dir(root) / FASHION_MNIST_LABEL_FILES[split]
    if path.is_file():
        return read_idx(path)
    return _torchvision_fashion_mnist(split, download)[1]


def _torchvision_fashion_mnist(split: str, download: bool) -> tuple[np.ndarray, np.ndarray]:
    hint = ("Fashion-MNIST is not installed: run `apt-get install dataset-fashion-mnist` (offline files "
            f"under {FASHION_MNIST_DIR}) or set MANIFPT_FASHION_MNIST to a folder holding the idx files")
    if not download:
        raise DatasetUnavailableError(hint)
    try:
        from torchvision.datasets import FashionMNIST

        ds = FashionMNIST(str(cache_dir() / "torchvision"), train=split == "train", download=True)
    except Exception as e:  # no network, server down, corrupt download: all mean "not available"
        raise DatasetUnavailableError(f"{hint} (torchvision download failed: {e})") from e
    return ds.data.numpy().astype(np.uint8), ds.targets.numpy().astype(np.uint8)


def split_halves(labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint, class-stratified, seeded halves of ``range(len(labels))`` (sorted indices)."""
    rng = np.random.default_rng(seed)
    a, b = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        a.append(idx[: len(idx) // 2])
        b.append(idx[len(idx) // 2: 2 * (len(idx) // 2)])
    return np.sort(np.concatenate(a)), np.sort(np.concatenate(b))


# --------------------------------------------------------------------------- photographs


def bundled_photos() -> list[np.ndarray]:
    """Colour photographs shipped inside scikit-image and scikit-learn (no download)."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = [np.asarray(getattr(skimage.data, n)(), np.uint8) for n in SKIMAGE_PHOTOS]
    photos += [np.asarray(im, np.uint8) for im in load_sample_images().images]
    return photos


def photo_patches(n: int, size: int = 32, seed: int = 0, photos: list[np.ndarray] | None = None) -> np.ndarray:
    """``n`` random size×size RGB crops (uint8 N×size×size×3) of real photographs."""
    photos = bundled_photos() if photos is None else photos
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), np.uint8)
    which = rng.integers(len(photos), size=n)
    for j, p in enumerate(which):
        im = photos[p]
        y = rng.integers(0, im.shape[0] - size + 1)
        x = rng.integers(0, im.shape[1] - size + 1)
        out[j] = im[y:y + size, x:x + size]
    return out


def _shrink(im: np.ndarray, short_side: int) -> np.ndarray:
    h, w = im.shape[:2]
    s = short_side / min(h, w)
    if s >= 1:
        return im
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(im).resize(size, Image.Resampling.LANCZOS))


def _read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
        return np.asarray(im.convert("RGB"))


@functools.lru_cache(maxsize=2)
def real_photographs(short_side: int = PHOTO_SHORT_SIDE) -> dict[str, np.ndarray]:
    """Every available real colour photograph, name → uint8 H×W×3, shorter side ≤ ``short_side``.

    Names are ``skimage/<name>``, ``sklearn/<file>``, ``opencv-doc/<path>``, ``mate/<file>``. The Debian
    sources are used only when their packages are installed; the result is sorted by name. Cached per
    process (decoding the wallpapers takes seconds): treat the arrays as read-only.
    """
    from sklearn.datasets import load_sample_images

    out: dict[str, np.ndarray] = {}
    import skimage.data

    for n in SKIMAGE_PHOTOS:
        out[f"skimage/{n}"] = np.asarray(getattr(skimage.data, n)(), np.uint8)
    sk = load_sample_images()
    for fname, im in zip(sk.filenames, sk.images, strict=True):
        out[f"sklearn/{Path(fname).name}"] = np.asarray(im, np.uint8)
    for rel in OPENCV_PHOTOS:
        if (OPENCV_DOC_DIR / rel).is_file():
            out[f"opencv-doc/{rel}"] = _read_rgb(OPENCV_DOC_DIR / rel)
    if MATE_NATURE_DIR.is_dir():
        for p in sorted(MATE_NATURE_DIR.iterdir()):
            if p.suffix.lower() in (".jpg", ".jpeg", ".png"):
                out[f"mate/{p.name}"] = _read_rgb(p)
    return {k: _shrink(out[k], short_side) for k in sorted(out)}


def photo_groups(names: list[str], seed: int = 0) -> tuple[list[str], list[str]]:
    """Split photograph names into two disjoint groups, balanced within each source (±1 photo).

    Sources are taken in name order, each shuffled (seeded), and the concatenated order is dealt
    alternately to the two groups.
    """
    rng = np.random.default_rng(seed)
    order: list[str] = []
    for src in sorted({n.split("/", 1)[0] for n in names}):
        group = sorted(n for n in names if n.split("/", 1)[0] == src)
        order += [group[i] for i in rng.permutation(len(group))]
    return sorted(order[0::2]), sorted(order[1::2])


def load_photos(n: int = 20000, group: str = "all", size: int = 32, seed: int = 0,
                short_side: int = PHOTO_SHORT_SIDE) -> np.ndarray:
    """``n`` seeded size×size RGB crops of real photographs (uint8 N×size×size×3).

    group: ``all``, ``a`` or ``b`` (disjoint sets of source photographs, see ``photo_groups``). Every
    photograph of the group contributes the same number of crops (±1), so large wallpapers do not
    dominate; positions are uniform over each (downscaled) photograph.
    """
    photos = real_photographs(short_side)
    names = list(photos)
    if group in ("a", "b"):
        names = photo_groups(names, seed=0)[0 if group == "a" else 1]
    elif group != "all":
        raise ValueError(f"group must be 'all', 'a' or 'b', got '{group}'")
    rng = np.random.default_rng(seed)
    which = rng.permutation(np.arange(n) % len(names))
    out = np.empty((n, size, size, 3), np.uint8)
    for j, p in enumerate(which):
        im = photos[names[p]]
        y = rng.integers(0, im.shape[0] - size + 1)
        x = rng.integers(0, im.shape[1] - size + 1)
        out[j] = im[y:y + size, x:x + size]
    return out


# --------------------------------------------------------------------------- named real sets


def _fmnist(split: str, part: str | None = None) -> Callable[[int | None, int], np.ndarray]:
    def load(n: int | None, seed: int) -> np.ndarray:
        images = load_fashion_mnist(split)
        if part is not None:
            labels = load_fashion_mnist_labels(split)
            if part in ("a", "b"):
                idx = split_halves(labels, seed=0)[0 if part == "a" else 1]
            else:
                lo, hi = (int(v) for v in part.split("-"))
                idx = np.flatnonzero((labels >= lo) & (labels <= hi))
            images = images[idx]
        if n is not None and n < len(images):
            images = images[np.sort(np.random.default_rng(seed).choice(len(images), n, replace=False))]
        return images

    return load


def _photos(group: str, size: int = 32) -> Callable[[int | None, int], np.ndarray]:
    return lambda n, seed: load_photos(20000 if n is None else n, group=group, size=size, seed=seed)


def _bundled(n: int | None, seed: int) -> np.ndarray:
    return photo_patches(20000 if n is None else n, 32, seed=seed)


#: name → loader(n, seed) returning uint8 images; ``n=None`` means the whole set (photos: 20,000 crops).
REAL_SETS: dict[str, Callable[[int | None, int], np.ndarray]] = {
    "fmnist": _fmnist("train"),
    "fmnist-test": _fmnist("test"),
    "fmnist-a": _fmnist("train", "a"),
    "fmnist-b": _fmnist("train", "b"),
    "fmnist-c0-4": _fmnist("train", "0-4"),
    "fmnist-c5-9": _fmnist("train", "5-9"),
    "photos": _photos("all"),
    "photos-a": _photos("a"),
    "photos-b": _photos("b"),
    "photos64": _photos("all", 64),  # the 64 px benchmark's real set (crops of the same photographs)
    "photos64-a": _photos("a", 64),
    "photos64-b": _photos("b", 64),
    "bundled-photos": _bundled,
}


def load_real(name: str, n: int | None = None, seed: int = 0) -> np.ndarray:
    """A named real set (see ``REAL_SETS``) as a uint8 array; ``n`` draws a seeded subset."""
    try:
        loader = REAL_SETS[name]
    except KeyError:
        raise KeyError(f"unknown real set '{name}'; available: {', '.join(REAL_SETS)}") from None
    return loader(n, seed)


def write_image_folder(images: np.ndarray, out_dir: str | Path, *, start: int = 0,
                       overwrite: bool = False) -> list[Path]:
    """Write uint8 images as ``out_dir/{index:05d}.png`` (lossless), resumably.

    Each file is written under a temporary name and renamed, so a killed run leaves only complete
    PNGs; existing files are skipped unless ``overwrite`` (a rerun finishes the folder). Indices
    start at ``start`` so batches can be written as they are produced.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"images must be uint8, got {images.dtype}")
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    paths = []
    for i, im in enumerate(images):
        p = out_dir / f"{start + i:05d}.png"
        paths.append(p)
        if p.exists() and not overwrite:
            continue
        tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
        Image.fromarray(im).save(tmp, format="PNG")
        os.replace(tmp, p)
    return paths


def prepare_real(name: str, out: str | Path, n: int | None = None, seed: int = 0,
                 images: np.ndarray | None = None) -> Path:
    """Write the named real set to ``out/00000.png ...`` plus ``out/source.json`` (resumable).
    ``images``: the set as ``load_real(name, n, seed)`` gives it, when the caller has it already."""
    out = Path(out)
    images = load_real(name, n, seed) if images is None else images
    write_image_folder(images, out)
    info = {"name": name, "n": len(images), "seed": seed, "shape": list(images.shape[1:])}
    if name.startswith("photos"):
        names = list(real_photographs())
        if name.endswith(("-a", "-b")):
            names = photo_groups(names)[0 if name.endswith("-a") else 1]
        info["photographs"] = names
    # JSON rather than an image so the data layer never mistakes it for a sample
    write_json(out / REAL_SOURCE_FILE, info)
    return out
