"""Estimators of x*, the point of the data manifold nearest to an embedded image.

The paper's artifact subtracts the single nearest real sample (``nn1``): a 0-dimensional estimate
of the manifold, far away when tens of thousands of real images sit in thousands of dimensions.
The estimators here share the same exact k-NN search and differ in what they make of it:

- ``nn1``: the nearest real embedding (paper, default);
- ``knn-mean``: the mean of the k nearest;
- ``local-affine``: the projection onto the affine hull of the k nearest (as in locally linear
  embedding): x* = y₁ + Σ cᵢ (yᵢ − y₁) with c = argmin ‖(x − y₁) − Dc‖² + λ‖c‖², weights
  (1 − Σc, c) summing to 1; λ = ``ridge`` · tr(DᵀD)/(k − 1). Anchored at the nearest neighbour, so
  x* is never farther from x than nn1's (c = 0 is feasible); with ``ridge=0`` a point in the affine
  hull is reproduced exactly;
- ``autoencoder``: x* = embed(D(E(x))) for a convolutional autoencoder trained by manifpt on the
  real images only (cached by the real set's content hash): the manifold as a learned continuous
  surface in image space, seen through any embedding;
- ``raw``: no projection (x* = 0, the artifact is the embedding): the control every table carries.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .registry import Registry
from .search import gather_rows

if TYPE_CHECKING:
    from .data import ImageSource

#: rows of the real embeddings, readable by an index array (ndarray, memmap, ``cache.DiskRows``)
Rows = Any

#: every estimator of x*, by name (all defined in this module)
PROJECTORS: Registry[type[Projector]] = Registry("projection", group="manifpt.projections")
register_projector, get_projector, list_projectors = PROJECTORS.register, PROJECTORS.create, PROJECTORS.names


class Projector(ABC):
    """Maps query embeddings (and their images) to x* embeddings on the estimated manifold."""

    name: ClassVar[str] = "?"
    #: how many nearest neighbours ``project`` needs (0: none)
    k: int = 1

    def fit(self, real: ImageSource, show_progress: bool = True) -> Projector:
        """Learn from the real images, where the estimator needs to (the autoencoder)."""
        return self

    @abstractmethod
    def project(self, emb: np.ndarray, images: np.ndarray, nn_index: np.ndarray, nn_sqdist: np.ndarray,
                real_emb: Rows, embed: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """x* embeddings (float32 N×D) of the query embeddings ``emb`` (of ``images``).

        ``nn_index`` / ``nn_sqdist``: their ``k`` nearest real samples (N×k, by distance); ``real_emb``:
        the real embeddings (rows readable by index: an array, a memmap or ``cache.DiskRows``);
        ``embed``: the space's embedding of images."""

    def settings(self) -> dict[str, Any]:
        return {"projection": self.name}


@register_projector("nn1")
class NearestNeighbour(Projector):
    def project(self, emb, images, nn_index, nn_sqdist, real_emb, embed):
        return gather_rows(real_emb, nn_index[:, 0])


@register_projector("knn-mean")
class KNNMean(Projector):
    def __init__(self, k: int = 10):
        self.k = k

    def project(self, emb, images, nn_index, nn_sqdist, real_emb, embed):
        ys = gather_rows(real_emb, nn_index.ravel()).reshape(*nn_index.shape, -1)
        return ys.astype(np.float64).mean(1).astype(np.float32)

    def settings(self) -> dict[str, Any]:
        return {"projection": self.name, "k": self.k}


def affine_projection(x: np.ndarray, ys: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """Project x (N×D) onto the affine hull of ys (N×k×D; ys[:, 0] the anchor), ridge-regularised."""
    x64, y64 = x.astype(np.float64), ys.astype(np.float64)
    r = x64 - y64[:, 0]
    d = y64[:, 1:] - y64[:, :1]  # N×(k−1)×D
    if d.shape[1] == 0:
        return y64[:, 0]
    g = np.einsum("nid,njd->nij", d, d)  # N×(k−1)×(k−1)
    b = np.einsum("nid,nd->ni", d, r)
    out = np.empty_like(x64)
    for n in range(len(x64)):
        if ridge > 0:
            lam = ridge * max(np.trace(g[n]) / g.shape[1], 1e-300)
            c = np.linalg.solve(g[n] + lam * np.eye(g.shape[1]), b[n])
        else:  # exact least squares (minimum norm when the neighbours are affinely dependent)
            c = np.linalg.lstsq(d[n].T, r[n], rcond=None)[0]
        out[n] = y64[n, 0] + c @ d[n]
    return out


@register_projector("local-affine")
class LocalAffine(Projector):
    def __init__(self, k: int = 10, ridge: float = 1e-3):
        self.k, self.ridge = k, ridge

    def project(self, emb, images, nn_index, nn_sqdist, real_emb, embed):
        ys = gather_rows(real_emb, nn_index.ravel()).reshape(*nn_index.shape, -1)
        return affine_projection(emb, ys, self.ridge).astype(np.float32)

    def settings(self) -> dict[str, Any]:
        return {"projection": self.name, "k": self.k, "ridge": self.ridge}


@register_projector("raw")
class Raw(Projector):
    k = 0

    def project(self, emb, images, nn_index, nn_sqdist, real_emb, embed):
        return np.zeros_like(emb)


@register_projector("autoencoder")
class AutoencoderProjector(Projector):
    """x* = embed(D(E(x))) with a convolutional autoencoder trained on the real images (cached)."""

    k = 0

    def __init__(self, **config: Any):
        from .autoencoder import AEConfig

        self.config = AEConfig(**config)

    def fit(self, real: ImageSource, show_progress: bool = True) -> AutoencoderProjector:
        from .autoencoder import load_or_train

        self.ae_, self.ae_key_ = load_or_train(real, self.config, show_progress)
        return self

    def project(self, emb, images, nn_index, nn_sqdist, real_emb, embed):
        from .autoencoder import reconstruct

        return embed(reconstruct(self.ae_, images))

    def settings(self) -> dict[str, Any]:
        return {"projection": self.name, **self.config.model_dump(), "ae": getattr(self, "ae_key_", None)}
