"""Expected failures: errors a person can act on, printed by the CLI as one or two lines.

Everything the user can cause (a bad argument, a malformed models.yaml, a missing folder, a damaged
checkpoint) raises a ``ManifptError``; the CLI prints its message and exits with ``exit_code``
(2 for usage, 1 for data). Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class ManifptError(Exception):
    """An expected failure whose message names the file or argument and the fix."""

    exit_code = 1


class UsageError(ManifptError, ValueError):
    """Arguments that cannot work together (checked before any work is done)."""

    exit_code = 2


class DataError(ManifptError, ValueError):
    """Input files that cannot be used as they are (malformed manifest, unreadable checkpoint, ...)."""


class UnknownNameError(ManifptError, KeyError):
    """A name that is not registered (space, baseline, target column, ...), with the closest ones."""

    exit_code = 2

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        super().__init__(f"unknown {kind} '{name}'{hint} (available: {', '.join(known) or 'none'})")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def display(path: str | Path) -> str:
    """A path as a person can read it: bytes of non-UTF-8 file names shown as ``\\xNN``."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def check_name(kind: str, name: str, known: Iterable[str]) -> str:
    """``name`` if it is one of ``known``, else an ``UnknownNameError`` suggesting the closest."""
    known = list(known)
    if name not in known:
        raise UnknownNameError(kind, name, known)
    return name
