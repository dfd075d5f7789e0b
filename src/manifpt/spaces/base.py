"""The embedding-space interface and its registry (timm-style: one registered class per space)."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from ..data import ImageSource
from ..registry import Registry

#: every embedding space, by name: the modules of manifpt.spaces and installed plugins
SPACES: Registry[type[Space]] = Registry("space", package="manifpt.spaces", group="manifpt.spaces")
#: ``@register_space(name)``, ``get_space(name, **settings)`` (an instance), ``list_spaces()``
register_space, get_space, list_spaces = SPACES.register, SPACES.create, SPACES.names


def to_chw(images: np.ndarray) -> np.ndarray:
    """uint8 N×H×W(×C) → N×C×H×W (a view when possible)."""
    images = np.asarray(images)
    if images.ndim == 3:
        return images[:, None]
    if images.ndim == 4:
        return images.transpose(0, 3, 1, 2)
    raise ValueError(f"expected N×H×W or N×H×W×C images, got shape {images.shape}")


class Space(ABC):
    """Maps uint8 images to float32 vectors; the data manifold is estimated in this space.

    Subclasses set ``image_shaped`` (artifacts can be viewed as C×H×W images) and implement
    ``embed_batch``. ``settings()`` must include everything that changes the embedding, because
    it keys the on-disk caches. ``fit`` is a no-op except for spaces that learn from the real set.
    """

    name: ClassVar[str] = "?"
    #: artifacts can be viewed as C×H×W images (a CNN attributor, image figures)
    image_shaped: ClassVar[bool] = False
    #: an element's position carries meaning that a translation-equivariant CNN would lose (FREQ: the
    #: position is the frequency), so the attributor gets coordinate channels (CoordConv)
    positional: ClassVar[bool] = False
    batch_size: int = 256

    def fit(self, real: ImageSource) -> Space:
        return self

    @abstractmethod
    def embed_batch(self, images: np.ndarray) -> np.ndarray:
        """Embed one batch of uint8 images to float32 N×D."""

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """JSON-serialisable description of everything that determines the embedding."""

    def embed(self, images: np.ndarray) -> np.ndarray:
        """Embed uint8 N×H×W(×C) images to float32 N×D, in batches of ``batch_size``."""
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise TypeError(f"images must be uint8, got {images.dtype}")
        if images.ndim not in (3, 4):
            raise ValueError(f"expected N×H×W or N×H×W×C images, got shape {images.shape}")
        parts = [self.embed_batch(images[i:i + self.batch_size]) for i in range(0, len(images), self.batch_size)]
        if not parts:
            return np.zeros((0, self.dim(images.shape[1:])), np.float32)
        out = np.concatenate(parts)
        return np.ascontiguousarray(out, dtype=np.float32)

    def dim(self, image_shape: tuple[int, ...]) -> int:
        """Embedding dimension for images of ``image_shape`` (H, W) or (H, W, C)."""
        return int(self.embed_batch(np.zeros((1, *image_shape), np.uint8)).shape[1])

    def artifact_shape(self, image_shape: tuple[int, ...]) -> tuple[int, ...] | None:
        """C×H×W when artifacts of this space are images, else ``None`` (plain vectors)."""
        if not self.image_shaped:
            return None
        c = 1 if len(image_shape) == 2 else image_shape[2]
        return (c, image_shape[0], image_shape[1])

    def view(self, chw: np.ndarray) -> np.ndarray | None:
        """A 2-D picture of one [0, 1] C×H×W image in this space, shown beside it in figures (or ``None``)."""
        return None

    def cache_key(self) -> str:
        blob = json.dumps({"space": self.name, **self.settings()}, sort_keys=True, default=str)
        return hashlib.blake2b(blob.encode(), digest_size=12).hexdigest()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}({args})"
