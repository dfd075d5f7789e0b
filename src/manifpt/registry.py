"""One registry for every pluggable kind: spaces, baselines, projectors, zoo families, studies.

timm-style: a new entry is one decorated class (or function) in one file. A registry knows where
its entries live and imports them on first lookup (so ``manifpt --help`` loads no torch): listed
modules, every public module of a package (a new file there is found without editing a list), and
the installed plugins of an entry-point group (``[project.entry-points."manifpt.spaces"]`` in a
third-party package's pyproject.toml). A name registered twice is an error (a silent overwrite would swap a method under
every table that names it); an unknown name is an ``UnknownNameError`` that suggests the closest.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names → entries of one ``kind``. Entries are found in ``modules``, in every module of ``package``
    whose name does not start with ``_``, and in the plugins of the entry-point ``group``.

    ``attr``: the attribute that receives the registered name on the entry (``name`` for spaces,
    baselines and projectors, ``family_key`` for zoo families), or ``None``.
    """

    def __init__(self, kind: str, modules: Sequence[str] = (), attr: str | None = "name", package: str | None = None,
                 group: str | None = None):
        self.kind, self.modules, self.attr, self.package, self.group = kind, tuple(modules), attr, package, group
        self._entries: dict[str, T] = {}
        self._loaded = not (self.modules or package or group)

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: add the class or function under ``name`` (lower case)."""
        key = name.lower()

        def deco(obj: T) -> T:
            old = self._entries.get(key)
            if old is not None and _origin(old) != _origin(obj):
                raise ValueError(f"{self.kind} '{key}' is already registered by {_origin(old)}")
            if self.attr is not None:
                setattr(obj, self.attr, key)
            self._entries[key] = obj
            return obj

        return deco

    def unregister(self, name: str) -> None:
        """Remove an entry (a plugin being reloaded, a test's temporary entry)."""
        self._entries.pop(name.lower(), None)

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        mods = list(self.modules)
        if self.package:
            path = importlib.import_module(self.package).__path__
            mods += [f"{self.package}.{m.name}" for m in pkgutil.iter_modules(path) if not m.name.startswith("_")]
        for mod in mods:
            importlib.import_module(mod)
        if self.group:
            for ep in entry_points(group=self.group):
                ep.load()

    def get(self, name: str) -> T:
        """The entry registered as ``name`` (any case); ``UnknownNameError`` lists the closest names."""
        key = str(name).lower()
        if key not in self._entries:
            self._load()
        try:
            return self._entries[key]
        except KeyError:
            raise UnknownNameError(self.kind, str(name), self._entries) from None

    def create(self, name: str, **kwargs: Any) -> Any:
        """An instance of the class registered as ``name``, built with ``kwargs``."""
        return self.get(name)(**kwargs)  # type: ignore[operator]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        self._load()
        return isinstance(name, str) and name.lower() in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._entries[n]) for n in self.names()]


def _origin(obj: Any) -> str:
    """Where an entry is defined: the same class re-created by a module reload is not a clash."""
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
