"""Any learner on any input: the grid that tells the fingerprint from the learner.

ManiFPT is one *learner* (the attributor) on one *input* (nn1 artifacts); Marra19 is another learner
(a CNN with an exemplar memory, trained incrementally, predicting by the nearest mean of exemplars)
on another input (images). A table of the two cannot say which of the two differences wins. Here
every learner can be trained on every input of a run: the artifacts of each space and estimator of
x*, including the raw control (projection ``raw``: the embedding itself; in RGB space, the image).

Learners (``LEARNERS``):

- ``attributor``: ManiFPT's attributor with the run's ``AttributorConfig``;
- ``linear``: the same training recipe with a linear head (a linear probe: how much is linearly
  readable from the input);
- ``wang20``: Wang20's CNN and training recipe (``manifpt.baselines.wang20``; on arrays the flips
  are its only augmentation, blur and JPEG being operations on images);
- ``marra19``: Marra19's incremental learner (``manifpt.baselines.marra19``).

Every learner is trained on the training part of a split and early-stops on its validation part
(the baselines' ``fit(X, y, X_val, y_val)``), so each sees the same data and the validation
predictions of every learner are those of a model that did not train on them (what
``manifpt.fusion`` selects on). The baselines' own rows (``manifpt compare --methods``) keep their
published protocol instead (trained on training + validation, carving their own early-stopping set).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .attribute import Attributor, AttributorConfig
from .cache import write_json

#: the learners every input can be given (``compare --learners``)
LEARNERS = ("attributor", "linear", "wang20", "marra19")


def learner_method_name(base: str, learner: str) -> str:
    """Results-row name of ``learner`` on the input of method ``base`` (``manifpt``, ``manifpt[raw]``):
    ``base`` itself for the attributor (ManiFPT as published), ``<base>@<learner>`` otherwise."""
    return base if learner == "attributor" else f"{base}@{learner}"


class BaselineLearner:
    """A baseline's learner on N×D input arrays with the attributor's interface.

    ``fit(X, y, X_val, y_val)``, ``predict_proba``, ``transform`` (the learner's penultimate
    features), ``classes_`` and ``save``; rows of ``X`` are reshaped to ``input_shape`` (C, H, W) or
    kept as vectors, so an image CNN sees image-shaped artifacts and vectors get an MLP.
    """

    def __init__(self, baseline: Any, input_shape: tuple[int, ...] | None):
        self.baseline, self.input_shape = baseline, tuple(input_shape) if input_shape else None

    def _x(self, X: np.ndarray | None) -> np.ndarray | None:
        if X is None:
            return None
        X = np.asarray(X, np.float32)
        return X.reshape(len(X), *self.input_shape) if self.input_shape else X.reshape(len(X), -1)

    def fit(self, X: np.ndarray, y: Any, X_val: np.ndarray | None = None, y_val: Any = None) -> BaselineLearner:
        self.baseline.fit(self._x(X), np.asarray(y).astype(str), self._x(X_val),
                          None if y_val is None else np.asarray(y_val).astype(str))
        return self

    @property
    def classes_(self) -> np.ndarray:
        return self.baseline.classes_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.baseline.predict_proba(self._x(X))

    def transform(self, X: np.ndarray) -> np.ndarray:
        return self.baseline.features(self._x(X))

    def save(self, directory: str | Path) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        write_json(Path(directory) / "learner.json", {**self.baseline.describe(), "input_shape": self.input_shape})


def attributor_factory(config: AttributorConfig, input_shape: tuple[int, ...] | None, positional: bool = False,
                       show_progress: bool = True) -> Callable[[int], Attributor]:
    """seed → an unfitted ``Attributor`` with these settings (``positional``: the space's
    ``Space.positional``, which gives the attributor coordinate channels). Under a Ray executor whose
    cluster has several GPUs, each fit is data-parallel over them (``RayExecutor.ddp_workers``)."""
    from .executor import current

    ddp = getattr(current(), "ddp_workers", 1)

    def make(seed: int) -> Attributor:
        att = Attributor.from_config(config, input_shape, seed=seed, coords=positional, show_progress=show_progress)
        return att.set_params(ddp_workers=ddp)
    return make


def learner_factory(learner: str, attributor: AttributorConfig, input_shape: tuple[int, ...] | None,
                    positional: bool = False, baseline_options: dict[str, Any] | None = None,
                    show_progress: bool = True) -> Callable[[int], Any]:
    """seed → an unfitted ``learner`` for inputs of ``input_shape`` (``None``: vectors).

    ``attributor``: the run's attributor settings (``attributor`` and ``linear``; ``arch`` is taken
    as the run-wide choice for image-shaped inputs, ``nn.nets.arch_for``); ``baseline_options``: the
    baseline's own settings (``wang20`` and ``marra19``, as ``compare``'s ``baseline_options``)."""
    from .errors import check_name
    from .nn.nets import arch_for

    check_name("learner", learner, LEARNERS)
    if learner in ("attributor", "linear"):
        arch = "linear" if learner == "linear" else arch_for(attributor.arch, input_shape)
        return attributor_factory(attributor.model_copy(update={"arch": arch}), input_shape, positional,
                                  show_progress)
    from .baselines import get_baseline

    opts = dict(baseline_options or {})
    if attributor.device is not None:
        opts.setdefault("device", attributor.device)
    return lambda seed: BaselineLearner(get_baseline(learner, seed=seed, **opts), input_shape)
