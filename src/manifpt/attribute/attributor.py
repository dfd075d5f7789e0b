"""The attributor: a classifier of artifacts with the scikit-learn estimator interface.

``Attributor(...).fit(X, y, X_val, y_val)`` trains with cross-entropy (AdamW, cosine schedule,
early stopping on validation accuracy, best weights restored), bf16 autocast on CUDA. Inputs are
standardised per element (pixel / frequency bin / dimension) with statistics of the training set,
stored with the weights. ``save``/``load`` use safetensors + JSON only: loading
an attributor never executes code from the files.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from ..cache import atomic_dir, write_json
from ..errors import DataError
from ..estimator import store_params
from ..progress import progress
from ..runtime import batchnorm_subset, default_device, recalibrate_batchnorm, seed_everything
from .config import AttributorConfig
from .nets import ARCHS, Net, build_net, default_arch

FORMAT = "manifpt-attributor/1"


#: the parameters saved with a model as its training recipe ("config" in attributor.json)
TRAIN_KEYS = ("arch", "epochs", "batch_size", "lr", "weight_decay", "patience", "pretrained", "depth", "seed",
              "max_train_seconds", "coords")


@dataclass
class History:
    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    seconds: float = 0.0


class Attributor(ClassifierMixin, BaseEstimator):
    """Predicts a design factor (model, upsampling, ...) from artifacts; a scikit-learn estimator.

    The training parameters are those of ``AttributorConfig`` (``from_config`` builds one from it),
    plus ``seed`` and ``coords`` (CoordConv input channels, for spaces whose positions carry meaning:
    ``Space.positional``). ``input_shape`` is (C, H, W) for image-shaped artifacts or ``None`` for
    vectors; ``device`` defaults to CUDA when present.
    """

    def __init__(self, input_shape: tuple[int, ...] | None = None, *, arch: str = "auto", epochs: int = 40,
                 batch_size: int = 64, lr: float | None = None, weight_decay: float = 5e-4, patience: int = 6,
                 pretrained: bool = True, depth: int = 3, seed: int = 0, max_train_seconds: float | None = None,
                 coords: bool = False, device: str | None = None, show_progress: bool = True):
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

    def _batches(self, X: np.ndarray, bs: int) -> Any:
        for lo in range(0, len(X), bs):
            yield self._standardise(X[lo:lo + bs]).to(self.device_, non_blocking=True)

    def _autocast(self) -> Any:
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device_.type == "cuda")

    # -- estimator API ----------------------------------------------------------------
    def fit(self, X: np.ndarray, y: np.ndarray | list, X_val: np.ndarray | None = None,
            y_val: np.ndarray | list | None = None) -> Attributor:
        """Train on (X, y); early-stop on (X_val, y_val) when given (else on training accuracy)."""
        gen = seed_everything(self.seed)
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
        opt = torch.optim.AdamW(self.net_.parameters(), lr=lr, weight_decay=self.weight_decay)
        steps_per_epoch = max(1, int(np.ceil(len(X) / self.batch_size)))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=self.epochs * steps_per_epoch,
                                                    pct_start=0.1)
        has_val = X_val is not None and y_val is not None and len(X_val) > 0
        yv = np.searchsorted(self.classes_, np.asarray(y_val).astype(str)) if has_val else None
        self.history_ = History()
        best_key, best_state, since = (-1.0, 0.0), None, 0
        t0 = time.perf_counter()
        # a fixed subset of the training data re-estimates batch-norm statistics after every epoch
        bn_X = X[batchnorm_subset(len(X), self.seed)]
        bar = progress(range(self.epochs), desc=f"train {arch}", disable=not self.show_progress)
        for epoch in bar:
            self.net_.train()
            order = torch.randperm(len(X), generator=gen).numpy()
            tot, correct, n = 0.0, 0, 0
            for lo in range(0, len(order), self.batch_size):
                idx = np.sort(order[lo:lo + self.batch_size])
                if len(idx) < 2 and len(order) > 1:
                    continue  # a batch of one breaks batch norm
                xb = self._standardise(X[idx]).to(self.device_)
                yb = torch.from_numpy(yi[idx]).to(self.device_)
                with self._autocast():
                    logits = self.net_(xb)
                loss = F.cross_entropy(logits.float(), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                tot += float(loss.detach()) * len(idx)
                correct += int((logits.argmax(1) == yb).sum())
                n += len(idx)
            with self._autocast():
                recalibrate_batchnorm(self.net_, self._batches(bn_X, self.batch_size))
            rec = {"epoch": epoch, "train_loss": tot / max(n, 1), "train_acc": correct / max(n, 1)}
            if has_val:
                p = self._proba(X_val)
                rec["val_acc"] = float((p.argmax(1) == yv).mean())
                rec["val_loss"] = float(-np.log(np.clip(p[np.arange(len(yv)), yv], 1e-12, None)).mean())
                key = (rec["val_acc"], -rec["val_loss"])
            else:
                key = (rec["train_acc"], -rec["train_loss"])
            self.history_.epochs.append(rec)
            bar.set_postfix({k: f"{v:.3f}" for k, v in rec.items() if k != "epoch"})
            if key > best_key:
                best_key, since = key, 0
                best_state = {k: v.detach().clone() for k, v in self.net_.state_dict().items()}
                self.history_.best_epoch = epoch
            else:
                since += 1
            if since >= self.patience:
                break
            if self.max_train_seconds and time.perf_counter() - t0 > self.max_train_seconds:
                break
        if best_state is not None:
            self.net_.load_state_dict(best_state)
        self.history_.seconds = time.perf_counter() - t0
        self.net_.eval()
        return self

    @torch.inference_mode()
    def _apply(self, X: np.ndarray, fn: Any, width: int, bs: int = 512) -> np.ndarray:
        """``fn`` (network output → float tensor) over ``X`` in eval mode, in batches: N×width float32."""
        check_is_fitted(self, "net_")
        self.net_.eval()
        out = []
        for xb in self._batches(X, bs):
            with self._autocast():
                out.append(fn(xb).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, width), np.float32)

    def _proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "net_")
        return self._apply(X, lambda xb: torch.softmax(self.net_(xb).float(), 1), len(self.classes_))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, columns in ``classes_`` order (rows sum to 1)."""
        return self._proba(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        proba = self.predict_proba(X)  # first: an unfitted attributor raises NotFittedError there
        return self.classes_[proba.argmax(1)]

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Penultimate features (the attributor's learned fingerprint space)."""
        return self._apply(X, lambda xb: self.net_.features(xb), 0)

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
        if fmt != FORMAT:
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
