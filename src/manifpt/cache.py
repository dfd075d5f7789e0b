"""Where manifpt keeps what it computes once and reuses, and how it writes files safely.

Every cache entry is a directory that appears under its final name only when complete
(written under a temporary name, then ``os.replace``d), so a killed run never leaves a
half-written entry that a later run would read as complete. Complete is not the same as intact
(a disk error or an edit can change a file later), so stored outputs also record a content digest
of each file when written (``file_digest``), and readers check it before reuse.

Text is written as UTF-8 with ``surrogateescape``: file names that are not valid UTF-8 (bytes on
Linux) are written byte for byte, as the file system holds them, and read back the same way.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np


def cache_dir() -> Path:
    """``$MANIFPT_CACHE`` or ``~/.cache/manifpt``."""
    return Path(os.environ.get("MANIFPT_CACHE") or Path.home() / ".cache" / "manifpt")


def hash_json(obj: Any, n: int = 12) -> str:
    return hashlib.blake2b(json.dumps(obj, sort_keys=True, default=str).encode(), digest_size=n).hexdigest()


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that is renamed to ``final`` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb", **kwargs: Any) -> Iterator[IO[Any]]:
    """A file open for writing under a temporary name, fsynced and renamed to ``path`` only when the
    block succeeds: readers see the old file or the whole new one, never a half-written one (a
    stream of predictions as much as a small JSON). A failed block removes its temporary file; one
    left by a killed process is removed by ``remove_stale_temporaries``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` with ``atomic_open``: readers see the old file or the new one."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete ``.<name>.tmp<pid>`` files in ``folder`` whose writing process no longer runs."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp*"):
        pid = tmp.name.rsplit(".tmp", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def yaml_mapping(text: str, where: str | Path, empty_ok: bool = False) -> dict[str, Any]:
    """A YAML document that must be a mapping of settings; unreadable YAML or another type is a
    ``DataError`` naming ``where`` (an empty document is ``{}`` when ``empty_ok``)."""
    import yaml

    from .errors import DataError

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise DataError(f"{where}: not readable YAML ({getattr(e, 'problem', None) or e})") from None
    if doc is None and empty_ok:
        return {}
    if not isinstance(doc, dict):
        raise DataError(f"{where}: expected a mapping of settings, got a {type(doc).__name__}")
    return doc


def read_text(path: str | Path) -> str:
    """Read text written by ``atomic_write_text`` (non-UTF-8 file names come back byte for byte)."""
    return Path(path).read_bytes().decode("utf-8", "surrogateescape")


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8", "surrogateescape"))


def finite(obj: Any) -> Any:
    """``obj`` with every NaN / ±Infinity float replaced by ``None``: JSON has no such numbers, and a
    results.json holding them is not JSON that other tools can read."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if hasattr(obj, "dtype") and getattr(obj, "shape", None) == ():  # numpy scalar
        return finite(obj.item())
    return obj


def write_json(path: str | Path, obj: Any) -> None:
    text = json.dumps(finite(obj), indent=2, sort_keys=True, default=str, allow_nan=False)
    atomic_write_text(path, text + "\n")


class DiskRows:
    """An N×D array in a raw file, read and written with ``pread``/``pwrite``, never memory-mapped.

    Why not ``np.memmap``: pages a mapping touches count in the process's resident set until the
    kernel reclaims them, so scanning a mapped file larger than RAM pushes the process to its limit.
    Reads through the page cache do not: RSS holds only the rows a caller asked for. Indexing takes an
    int, a slice (step 1) or an integer array (rows read once each, in file order, then reordered);
    slices can be assigned. Reads and writes are thread-safe (no shared file offset).
    """

    def __init__(self, path: str | Path, shape: tuple[int, int], dtype=np.float32, mode: str = "r"):
        self.path, self.shape, self.dtype = Path(path), (int(shape[0]), int(shape[1])), np.dtype(dtype)
        if mode == "w+":
            with open(self.path, "wb") as fh:
                fh.truncate(self.shape[0] * self.row_bytes)
        self._fd = os.open(self.path, os.O_RDONLY if mode == "r" else os.O_RDWR)
        size = os.fstat(self._fd).st_size
        if size != self.shape[0] * self.row_bytes:
            self.close()  # (not os.close: __del__ would close the number again, maybe someone else's file)
            raise ValueError(f"{self.path}: {size} bytes, expected {self.shape[0]}×{self.shape[1]} {self.dtype}")

    ndim = 2

    @property
    def row_bytes(self) -> int:
        return self.shape[1] * self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.row_bytes

    def __len__(self) -> int:
        return self.shape[0]

    def close(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)
            self._fd = None

    __del__ = close

    def _read(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((max(0, stop - start), self.shape[1]), self.dtype)
        view, off = memoryview(out.reshape(-1).view(np.uint8)), start * self.row_bytes
        while len(view):  # pread may return less than asked
            got = os.preadv(self._fd, [view], off)
            if got == 0:
                raise OSError(f"{self.path}: file ended at byte {off}")
            view, off = view[got:], off + got
        return out

    def __getitem__(self, key) -> np.ndarray:
        n = self.shape[0]
        if isinstance(key, (int, np.integer)):
            i = int(key) + (n if key < 0 else 0)
            if not 0 <= i < n:
                raise IndexError(f"row {key} out of range for {n} rows")
            return self._read(i, i + 1)[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step != 1:
                raise IndexError("DiskRows slices must have step 1")
            return self._read(start, max(start, stop))
        idx = np.asarray(key, np.int64).ravel()
        if len(idx) and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        uniq, inv = np.unique(np.where(idx < 0, idx + n, idx), return_inverse=True)
        if not len(uniq):
            return np.empty((*np.shape(key), self.shape[1]), self.dtype)
        rows = np.empty((len(uniq), self.shape[1]), self.dtype)
        breaks = np.flatnonzero(np.diff(uniq) != 1) + 1  # runs of consecutive rows: one read each
        for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(uniq)], strict=True):
            rows[lo:hi] = self._read(int(uniq[lo]), int(uniq[lo]) + int(hi - lo))
        return rows[inv.reshape(np.shape(key))]

    def __setitem__(self, key: slice, value: np.ndarray) -> None:
        start, stop, step = key.indices(self.shape[0]) if isinstance(key, slice) else (None, None, None)
        if step != 1:
            raise IndexError("DiskRows assignment takes a slice with step 1")
        data = np.ascontiguousarray(np.broadcast_to(value, (stop - start, self.shape[1])), self.dtype)
        view, off = memoryview(data.reshape(-1).view(np.uint8)), start * self.row_bytes
        while len(view):
            put = os.pwritev(self._fd, [view], off)
            view, off = view[put:], off + put

    def flush(self) -> None:
        os.fsync(self._fd)
