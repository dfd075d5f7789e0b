"""Embedding spaces: ``get_space("rgb" | "freq" | "sl" | "ssl")``; add one with ``@register_space``."""

from . import pixel, sl, ssl  # noqa: F401  (registration side effects)
from .base import Space, get_space, list_spaces, register_space

__all__ = ["Space", "get_space", "list_spaces", "register_space"]

