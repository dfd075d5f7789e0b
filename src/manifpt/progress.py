"""One progress-bar helper so every long loop looks the same and can be silenced (MANIFPT_QUIET=1)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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


class StageTimer:
    """Wall time per pipeline stage (decode, embed, index, search, train, evaluate), for run.json.

    Stages nest; time is charged to the innermost open stage only, so the totals add up to the time
    spent inside any stage and a decode done while embedding counts as decode. ``counts`` records
    how many items (images, queries) each stage processed, for images/s. One timer per process
    (``STAGES``); the main thread's stages only.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.seconds: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self._stack: list[list[Any]] = []

    @contextmanager
    def __call__(self, name: str, items: int = 0) -> Iterator[None]:
        now = time.perf_counter()
        if self._stack:
            parent = self._stack[-1]
            self.seconds[parent[0]] = self.seconds.get(parent[0], 0.0) + now - parent[1]
        self._stack.append([name, now])
        try:
            yield
        finally:
            end = time.perf_counter()
            _, t0 = self._stack.pop()
            self.seconds[name] = self.seconds.get(name, 0.0) + end - t0
            self.counts[name] = self.counts.get(name, 0) + items
            if self._stack:
                self._stack[-1][1] = end

    def summary(self) -> dict[str, dict[str, float]]:
        """{stage: {seconds, items, items_per_s}} (items_per_s where items were counted)."""
        out = {}
        for name, s in sorted(self.seconds.items(), key=lambda kv: -kv[1]):
            row = {"seconds": round(s, 3), "items": self.counts.get(name, 0)}
            if row["items"] and s > 0:
                row["items_per_s"] = round(row["items"] / s, 1)
            out[name] = row
        return out


STAGES = StageTimer()
