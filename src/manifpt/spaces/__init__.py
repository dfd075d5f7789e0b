"""Embedding spaces: ``get_space("rgb" | "freq" | "sl" | "ssl")``; add one with ``@register_space``."""

from . import pixel, sl, ssl  # noqa: F401  (registration side effects)
from .base import Space, get_space, list_spaces, register_space

__all__ = ["Space", "check_space", "get_space", "list_spaces", "register_space"]


def check_space(name: str) -> str:
    """``name`` if it is a registered space (checked before any work), else ``UnknownNameError``."""
    from ..errors import check_name

    return check_name("space", name.lower(), list_spaces())
