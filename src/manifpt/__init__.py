"""manifpt: manifold-based fingerprints of generative models (Song et al., ManiFPT).

Public API::

    from manifpt import get_space, Manifold
    space = get_space("rgb")                     # "freq", "sl", "ssl"
    m = Manifold(space).fit(real_images)          # uint8 N×H×W(×C) array or an ImageSet
    nn_index, nn_sqdist = m.project(gen_images)   # exact nearest real sample
    art = m.artifacts(gen_images)                 # embed(gen) − embed(real[nn_index])

Names are imported on first use, so the command line starts without loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ArraySource": "data", "BadFile": "data", "BadImageError": "data", "GeneratedSet": "data", "ImageSet": "data",
    "Manifold": "manifold", "ExactKNN": "search", "Space": "spaces", "get_space": "spaces",
    "list_spaces": "spaces", "register_space": "spaces", "Attributor": "attribute",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'manifpt' has no attribute {name!r}")
