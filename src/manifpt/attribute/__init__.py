"""Attribution: classifiers of artifacts (``Attributor``), their settings and their networks.

Imported on first use, so reading an ``AttributorConfig`` (the CLI, presets) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"Attributor": "attributor", "AttributorConfig": "config", "ARCHS": "nets", "build_net": "nets"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'manifpt.attribute' has no attribute {name!r}")
