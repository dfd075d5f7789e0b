"""The attributor: a classifier of artifacts with the scikit-learn estimator interface.

``Attributor(...).fit(X, y, X_val, y_val)`` trains with ``manifpt.nn.train.fit_classifier``
(cross-entropy, AdamW, one-cycle schedule, early stopping on validation accuracy with the best
weights restored, bf16 autocast on CUDA). Inputs are
standardised per element (pixel / frequency bin / dimension) with statistics of the training set,
stored with the weights. ``save``/``load`` use safetensors + JSON only: loading
an attributor never executes code from the files.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from ..cache import atomic_dir, write_json
from ..errors import DataError
from ..estimator import store_params
from ..nn.nets import ARCHS, Net, build_net, default_arch
from ..nn.train import History, TrainConfig, apply, fit_classifier
from ..runtime import default_device, seed_everything
from .config import AttributorConfig

FORMAT = "manifpt-attributor/2"
#: format 1 stored the CIFAR ResNet as one ``nn.Sequential`` (``net.0`` conv, ``net.1`` batch norm,
#: ``net.3…`` blocks); format 2 as ``stem`` + ``layers`` (``manifpt.nn.resnet``). Same weights.
_V1_CIFAR = re.compile(r"^(net\.body\.(?:1\.)?)net\.(\d+)\.")


def _from_v1(key: str) -> str:
    def rename(m: re.Match[str]) -> str:
        i = int(m.group(2))
        return f"{m.group(1)}stem.{i}." if i < 3 else f"{m.group(1)}layers.{i - 3}."
    return _V1_CIFAR.sub(rename, key)


#: the parameters saved with a model as its training recipe ("config" in attributor.json)
TRAIN_KEYS = ("arch", "epochs", "batch_size", "lr", "weight_decay", "patience", "pretrained", "depth", "seed",
              "max_train_seconds", "coords")


class Attributor(ClassifierMixin, BaseEstimator):
    """Predicts a design factor (model, upsampling, ...) from artifacts; a scikit-learn estimator.

    The training parameters are those of ``AttributorConfig`` (``from_config`` builds one from it),
    plus ``seed`` and ``coords`` (CoordConv input channels, for spaces whose positions carry meaning:
    ``Space.positional``). ``input_shape`` is (C, H, W) for image-shaped artifacts or ``None`` for
    vectors; ``device`` defaults to CUDA when present. ``ddp_workers`` > 1 trains data-parallel on
    the Ray cluster (``manifpt.ray_executor.ddp_fit``): close to, not bit-identical with, one process
    (batch norm sees each worker's share of a batch).
    """

    def __init__(self, input_shape: tuple[int, ...] | None = None, *, arch: str = "auto", epochs: int = 40,
                 batch_size: int = 64, lr: float | None = None, weight_decay: float = 5e-4, patience: int = 6,
                 pretrained: bool = True, depth: int = 3, seed: int = 0, max_train_seconds: float | None = None,
                 coords: bool = False, device: str | None = None, show_progress: bool = True, ddp_workers: int = 1):
        store_params(self, locals())

    @classmethod
    def from_config(cls, config: AttributorConfig, input_shape: tuple[int, ...] | None = None, *, seed: int = 0,
                    coords: bool = False, show_progress: bool = True) -> Attributor:
        return cls(input_shape, seed=seed, coords=coords, show_progress=show_progress, **config.model_dump())

    # -- helpers ----------------------------------------------------------------------
    def _shape(self, X: np.ndarray) -> tuple[int, ...]:
        return tuple(self.input_shape) if self.input_shape else (X.shape[1],)

    def _standardise(self, X: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(X, np.float32)).reshape(len(X), *self.shape_)
        return (x - self.mean_) / self.std_

    def _input(self, batch: np.ndarray, device: torch.device) -> torch.Tensor:
        return self._standardise(batch).to(device, non_blocking=True)

    # -- estimator API ----------------------------------------------------------------
    def fit(self, X: np.ndarray, y: np.ndarray | list, X_val: np.ndarray | None = None,
            y_val: np.ndarray | list | None = None) -> Attributor:
        """Train on (X, y); early-stop on (X_val, y_val) when given (else on training accuracy)."""
        seed_everything(self.seed)
        self.device_ = default_device(self.device)
        y = np.asarray(y).astype(str)
        self.classes_ = np.array(sorted(set(y.tolist())))
        yi = np.searchsorted(self.classes_, y)
        self.shape_ = self._shape(X)
        arch = default_arch(self.shape_, self.device_) if self.arch == "auto" else self.arch
        if arch not in ARCHS:
            raise ValueError(f"unknown attributor architecture '{arch}' ({', '.join(ARCHS)})")
        self.arch_ = arch
        x = torch.from_numpy(np.ascontiguousarray(X, np.float32)).reshape(len(X), *self.shape_).double()
        # per element (pixel or frequency bin): FREQ artifacts have very different scales across
        # frequencies, and a few log(eps) outliers would swamp per-channel statistics
        self.mean_ = x.mean(dim=0, keepdim=True).float()
        self.std_ = x.std(dim=0, keepdim=True).float().clamp_min(1e-6)
        del x
        self.net_: Net = build_net(arch, self.shape_, len(self.classes_), self.pretrained, self.depth,
                                        self.coords and len(self.shape_) == 3).to(self.device_)
        lr = self.lr if self.lr is not None else (1e-4 if self.net_.init == "imagenet" else 1e-3)
        cfg = TrainConfig(lr=lr, weight_decay=self.weight_decay, batch_size=self.batch_size, epochs=self.epochs,
                          patience=self.patience, schedule="onecycle", monitor="accuracy",
                          max_seconds=self.max_train_seconds)
        has_val = X_val is not None and y_val is not None and len(X_val) > 0
        yv = np.searchsorted(self.classes_, np.asarray(y_val).astype(str)) if has_val else None
        Xv = X_val if has_val else None
        if self.ddp_workers > 1:  # data-parallel on a Ray cluster (Ray Train); replicas start identical
            from ..ray_executor import ddp_fit

            coords = self.coords and len(self.shape_) == 3
            shape, k = self.shape_, len(self.classes_)
            state, self.history_ = ddp_fit(lambda: build_net(arch, shape, k, self.pretrained, self.depth, coords),
                                           X, yi, Xv, yv, config=cfg, transform=self._input, seed=self.seed,
                                           workers=self.ddp_workers, use_gpu=self.device_.type == "cuda")
            self.net_.load_state_dict(state)
            self.net_.eval()
            return self
        self.history_ = fit_classifier(self.net_, X, yi, Xv, yv, config=cfg, transform=self._input,
                                       device=self.device_, seed=self.seed, show_progress=self.show_progress,
                                       desc=f"train {arch}")
        return self

    def _apply(self, X: np.ndarray, fn: Any, width: int) -> np.ndarray:
        """``fn`` (network, input batch → float tensor) over ``X`` in eval mode: N×width float32."""
        check_is_fitted(self, "net_")
        return apply(self.net_, X, fn, transform=self._input, device=self.device_, width=width)

    def _proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "net_")  # before classes_ is read
        return self._apply(X, lambda net, xb: torch.softmax(net(xb).float(), 1), len(self.classes_))

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Logits, columns in ``classes_`` order (what the energy score of ``manifpt.openset`` reads)."""
        check_is_fitted(self, "net_")
        return self._apply(X, lambda net, xb: net(xb).float(), len(self.classes_))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, columns in ``classes_`` order (rows sum to 1)."""
        return self._proba(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        proba = self.predict_proba(X)  # first: an unfitted attributor raises NotFittedError there
        return self.classes_[proba.argmax(1)]

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Penultimate features (the attributor's learned fingerprint space)."""
        return self._apply(X, lambda net, xb: net.features(xb).float(), 0)

    def outputs(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits, penultimate features) from one forward pass: what ``predict`` needs per batch for
        the probabilities and every open-set score, instead of one pass for each."""
        check_is_fitted(self, "net_")
        k = len(self.classes_)

        def both(net: Net, xb: torch.Tensor) -> torch.Tensor:
            f = net.features(xb)
            return torch.cat([net.head(f).float(), f.float()], 1)
        out = self._apply(X, both, k + self.net_.dim)
        return out[:, :k], out[:, k:]

    @staticmethod
    def softmax(logits: np.ndarray) -> np.ndarray:
        """``predict_proba``'s softmax of given logits (the same float32 operation)."""
        return torch.softmax(torch.from_numpy(np.ascontiguousarray(logits, np.float32)), 1).numpy()

    # -- persistence --------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` + ``attributor.json`` atomically."""
        directory = Path(directory)
        with atomic_dir(directory) as tmp:
            tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in self.net_.state_dict().items()}
            tensors["norm.mean"] = self.mean_.cpu().contiguous()
            tensors["norm.std"] = self.std_.cpu().contiguous()
            save_file(tensors, str(tmp / "model.safetensors"))
            write_json(tmp / "attributor.json", {
                "format": FORMAT, "arch": self.arch_, "init": self.net_.init, "classes": self.classes_.tolist(),
                "input_shape": list(self.shape_), "config": {k: getattr(self, k) for k in TRAIN_KEYS},
                "history": asdict(self.history_), "torch": torch.__version__})
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str | None = None) -> Attributor:
        """Load a saved attributor (safetensors + JSON; no pickle, no code execution).

        Every tensor is checked against what the metadata implies (the network built from the
        recorded architecture, normalisation tensors of shape 1×input_shape, float32, finite, std > 0):
        a file that does not match is refused, never loaded with a silent cast or broadcast.
        """
        directory = Path(directory)
        meta_path, weights = directory / "attributor.json", directory / "model.safetensors"
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as e:
            raise DataError(f"{meta_path}: cannot read the attributor's metadata ({e})") from None
        fmt = meta.get("format") if isinstance(meta, dict) else None
        if fmt not in (FORMAT, "manifpt-attributor/1"):
            raise DataError(f"{directory}: not a manifpt attributor (format {fmt!r}, expected {FORMAT})")
        try:
            cfg = meta["config"]
            shape = tuple(int(v) for v in meta["input_shape"])
            classes = np.array([str(c) for c in meta["classes"]])
            self = cls(shape if len(shape) == 3 else None, device=device,
                       **{k: v for k, v in cfg.items() if k != "arch"}, arch=meta["arch"])
            net = build_net(meta["arch"], shape, len(classes), pretrained=False, depth=cfg["depth"],
                            coords=cfg.get("coords", False) and len(shape) == 3)
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{meta_path}: malformed attributor metadata ({type(e).__name__}: {e})") from None
        try:
            tensors = load_file(str(weights))
        except Exception as e:  # safetensors raises its own error types for any malformed file
            raise DataError(f"{weights}: not a readable safetensors file ({e})") from None
        if fmt != FORMAT:
            tensors = {_from_v1(k): v for k, v in tensors.items()}
        expected = {f"net.{k}": (tuple(v.shape), v.dtype) for k, v in net.state_dict().items()}
        expected["norm.mean"] = expected["norm.std"] = ((1, *shape), torch.float32)
        missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        if missing or extra:
            raise DataError(f"{weights}: tensors do not match the recorded architecture "
                            f"(missing: {', '.join(missing[:3]) or '-'}; unexpected: {', '.join(extra[:3]) or '-'})")
        for k, (want_shape, want_dtype) in expected.items():
            t = tensors[k]
            if tuple(t.shape) != want_shape or t.dtype != want_dtype:
                raise DataError(f"{weights}: tensor {k} is {t.dtype} {tuple(t.shape)}, expected {want_dtype} "
                                f"{want_shape}")
        mean, std = tensors.pop("norm.mean"), tensors.pop("norm.std")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
            raise DataError(f"{weights}: normalisation tensors hold non-finite values or a non-positive std")
        self.device_ = default_device(device)
        self.classes_, self.shape_, self.arch_ = classes, shape, meta["arch"]
        self.mean_, self.std_ = mean, std
        net.load_state_dict({k.removeprefix("net."): v for k, v in tensors.items()})
        net.init = meta["init"]
        self.net_ = net.to(self.device_).eval()
        self.history_ = History(**meta["history"])
        return self
