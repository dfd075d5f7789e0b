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
from typing import Any


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


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` under a temporary name, fsync, rename: readers see the old file or the new one.

    A failed write (disk full, ...) removes its temporary file; one left by a killed process is
    removed by ``remove_stale_temporaries``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
