"""Embedding spaces: ``get_space("rgb" | "freq" | "sl" | "ssl")``; add one with ``@register_space``.

The registry imports the modules of this package on first lookup: a new space is one new file here
(or a plugin package, see docs/extending.md).
"""

from .base import Space, get_space, list_spaces, register_space

__all__ = ["Space", "get_space", "list_spaces", "register_space"]
