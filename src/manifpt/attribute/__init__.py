"""Attribution: the classifier of artifacts (``Attributor``) and its settings (``AttributorConfig``).

Its networks and training loop are in ``manifpt.nn``.

Imported on first use, so reading an ``AttributorConfig`` (the CLI, presets) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"Attributor": "attributor", "AttributorConfig": "config"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'manifpt.attribute' has no attribute {name!r}")
