"""SSL space: features of a self-supervised encoder (paper: Barlow Twins ResNet50, 2048-d).

Source choice (``source="auto"``): the published Barlow Twins ResNet50 when its weights are on
disk (``weights=PATH``, ``$MANIFPT_BARLOWTWINS_WEIGHTS`` or torch.hub's cache); otherwise a Barlow
Twins encoder that manifpt trains on the real set itself (``fit``), cached under
``$MANIFPT_CACHE/ssl/<key>`` keyed by the real set's content hash and the training recipe.
``source="hub"`` downloads the published weights (online path) with
``load_state_dict_from_url(weights_only=True)``: no hubconf code is executed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..cache import atomic_dir, cache_dir, file_digest, hash_json, write_json
from ..data import ImageSource
from ..nn.resnet import CifarResNet
from ..runtime import default_device, to_float_tensor
from .barlow import BarlowTwinsConfig, encoder, normalise, train_barlow_twins
from .base import Space, register_space
from .cnn import Backbone, find_weights, hub_checkpoint, resnet50_backbone, run_backbone

BARLOWTWINS_URL = "https://dl.fbaipublicfiles.com/barlowtwins/ep1000_bs2048_lrw0.2_lrb0.0048_lambd0.0051/resnet50.pth"


def find_barlowtwins_weights(weights: str | Path | None = None) -> Path | None:
    return find_weights(weights, "MANIFPT_BARLOWTWINS_WEIGHTS", "Barlow Twins", ["resnet50.pth"])


class NotFittedError(RuntimeError):
    pass


@register_space("ssl")
class SelfSupervisedSpace(Space):
    """Pooled features of a Barlow Twins encoder: published ResNet50, or trained here on the real set."""

    def __init__(self, source: str = "auto", weights: str | Path | None = None,
                 train: BarlowTwinsConfig | dict | None = None, resolution: int = 224, crop: float = 0.875,
                 batch_size: int = 128, device: str | None = None, show_progress: bool = True):
        self.source, self.weights, self.resolution, self.crop = source, weights, resolution, crop
        self.train = train if isinstance(train, BarlowTwinsConfig) else BarlowTwinsConfig(**(train or {}))
        self.batch_size, self.device, self.show_progress = batch_size, device, show_progress
        self._resnet: Backbone | None = None
        self._encoder: CifarResNet | None = None
        self._trained_key: dict[str, Any] | None = None

    def _mode(self) -> str:
        if self.source in ("auto", "file"):
            if find_barlowtwins_weights(self.weights) is not None:
                return "resnet50"
            if self.source == "file":
                raise FileNotFoundError("no Barlow Twins weights file (weights=PATH or $MANIFPT_BARLOWTWINS_WEIGHTS)")
            return "trained"
        if self.source in ("hub", "trained"):
            return "resnet50" if self.source == "hub" else "trained"
        raise ValueError(f"unknown SSL source '{self.source}' (auto, file, hub, trained)")

    def _load_resnet(self) -> Backbone:
        if self._resnet is None:
            path = find_barlowtwins_weights(self.weights)
            if path is None:  # source == "hub": online path
                torch.hub.load_state_dict_from_url(BARLOWTWINS_URL, map_location="cpu", weights_only=True)
                path = hub_checkpoint("resnet50.pth")
            self._resnet = resnet50_backbone(path)
            self._resnet.name = "barlowtwins_resnet50"
            self._resnet.model.to(default_device(self.device))
        return self._resnet

    def fit(self, real: ImageSource) -> SelfSupervisedSpace:
        """Train (or load from cache) the encoder on ``real`` when no published weights are used."""
        if self._mode() != "trained":
            return self
        key = {"real": real.fingerprint(), "shape": list(real.shape), "recipe": self.train.model_dump()}
        entry = cache_dir() / "ssl" / hash_json(key)
        channels = 1 if len(real.shape) == 2 else 3
        enc = encoder(channels, self.train.width)
        if not (entry / "encoder.safetensors").exists():
            trained = train_barlow_twins(real, self.train, default_device(self.device), self.show_progress)
            with atomic_dir(entry) as tmp:
                save_file(trained.state_dict(), str(tmp / "encoder.safetensors"))
                write_json(tmp / "meta.json", key)
        enc.load_state_dict(load_file(str(entry / "encoder.safetensors")))
        self._encoder = enc.eval().to(default_device(self.device))
        self._trained_key = {**key, "encoder_sha256": file_digest(entry / "encoder.safetensors")}
        return self

    def settings(self) -> dict[str, Any]:
        if self._mode() == "resnet50":
            net = self._load_resnet()
            return {"encoder": net.name, "weights_sha256": net.weights_sha256, "resolution": self.resolution,
                    "crop": self.crop}
        if self._trained_key is None:
            return {"encoder": "barlowtwins_trained", "fitted": False, "recipe": self.train.model_dump()}
        return {"encoder": "barlowtwins_trained", **self._trained_key}

    @torch.inference_mode()
    def embed_batch(self, images: np.ndarray) -> np.ndarray:
        if self._mode() == "resnet50":
            return run_backbone(self._load_resnet(), images, default_device(self.device), self.resolution,
                                self.crop)
        if self._encoder is None:
            raise NotFittedError("the trained SSL encoder needs fit(real_images) first (Manifold.fit does it)")
        x = normalise(to_float_tensor(images, default_device(self.device)))
        return self._encoder(x).float().cpu().numpy()

    def dim(self, image_shape: tuple[int, ...]) -> int:
        if self._mode() == "resnet50":
            return 2048
        return encoder(1, self.train.width).dim
