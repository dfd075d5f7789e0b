"""One progress-bar helper so every long loop looks the same and can be silenced (MANIFPT_QUIET=1)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def progress(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
             disable: bool = False, unit: str = "it") -> tqdm:
    """A tqdm bar on stderr; hidden when ``MANIFPT_QUIET`` is set or ``disable`` is true."""
    quiet = disable or os.environ.get("MANIFPT_QUIET", "") not in ("", "0")
    return tqdm(iterable, total=total, desc=desc, disable=quiet, unit=unit, dynamic_ncols=True,
                leave=False)


def notice(message: str) -> None:
    """Tell the user something they must know (a rebuilt cache, a skipped file): one line on stderr,
    printed above any progress bar, also in quiet runs."""
    from .errors import display

    tqdm.write(f"manifpt: {display(message)}", file=sys.stderr)
