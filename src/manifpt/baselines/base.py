"""The baseline-attributor interface and its registry (one registered class per prior method).

A baseline is a scikit-learn classifier on images: ``fit(images, y)``, ``predict``,
``predict_proba`` and ``features``, the method's own representation of an image (hand-crafted
features, or a CNN's penultimate layer), which the evaluation uses for FD ratio and t-SNE exactly as
the paper does for its Table 1 and Fig. 1. Every class states the paper it follows (``paper``) and
every way it departs from it (``deviations``), so that a reported number can be traced to a recipe.

Constructors only store their arguments (scikit-learn convention), so ``get_params``/``clone``
work and a baseline can be re-fit on each split of an experiment. Hyper-parameters are chosen by a
small stratified cross-validation *inside* ``fit``, on the training images only.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import LabelEncoder, StandardScaler
from sklearn.svm import SVC
from sklearn.utils.validation import check_is_fitted

from ..registry import Registry

#: every prior method, by name: the modules of manifpt.baselines and installed plugins
BASELINES: Registry[type[Baseline]] = Registry("baseline", package="manifpt.baselines", group="manifpt.baselines")

#: ITU-R BT.601 luma weights: what OpenCV's ``imread(path, 0)`` uses, i.e. the grayscale that the
#: frequency baselines' reference code (Durall et al.) computes its spectra on.
LUMA_BT601 = (0.299, 0.587, 0.114)


def bullets(text: str) -> list[str]:
    """The items of a Markdown bullet list ("- " starts an item, other lines continue it), whitespace-normalised."""
    items = (" ".join(item.split()) for item in re.split(r"^\s*- ", text, flags=re.MULTILINE))
    return [item for item in items if item]


#: ``@register_baseline(name)``, ``get_baseline(name, **params)`` (an unfitted instance), ``list_baselines()``
register_baseline, get_baseline, list_baselines = BASELINES.register, BASELINES.create, BASELINES.names


def check_images(images: np.ndarray) -> np.ndarray:
    """Validate the image contract: uint8 N×H×W (grayscale) or N×H×W×3 (RGB); N×H×W×1 → N×H×W."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"images must be uint8, got {images.dtype}")
    if images.ndim == 4 and images.shape[3] == 1:
        images = images[..., 0]
    if images.ndim == 3 or (images.ndim == 4 and images.shape[3] == 3):
        return images
    raise ValueError(f"expected N×H×W or N×H×W×3 uint8 images, got shape {images.shape}")


def check_arrays(x: np.ndarray) -> np.ndarray:
    """Validate the array contract of learners that take any input (``Baseline.array_inputs``): a
    floating-point N×C×H×W array (an image-shaped artifact, a spectrum) or N×D (a vector), finite."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"array inputs must be floating point, got {x.dtype}")
    if x.ndim not in (2, 4):
        raise ValueError(f"expected N×C×H×W or N×D float inputs, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("array inputs hold NaN or infinite values")
    return x


def to_gray(images: np.ndarray) -> np.ndarray:
    """uint8 N×H×W(×3) → float64 N×H×W grayscale (BT.601 luma for RGB, unrounded)."""
    images = check_images(images)
    if images.ndim == 3:
        return images.astype(np.float64)
    return images.astype(np.float64) @ np.asarray(LUMA_BT601)


def cv_splitter(y: np.ndarray, seed: int, max_splits: int = 3) -> StratifiedKFold | None:
    """A stratified k-fold over the training labels, or ``None`` when a class is too small to split."""
    n_splits = min(max_splits, int(np.bincount(y).min()))
    return StratifiedKFold(n_splits, shuffle=True, random_state=seed) if n_splits >= 2 else None


def select_and_fit(estimator: BaseEstimator, grid: dict[str, list[Any]], X: np.ndarray, y: np.ndarray,
                   seed: int, calibrate: bool = False) -> tuple[BaseEstimator, dict[str, Any]]:
    """Pick ``grid``'s best point by stratified CV accuracy on (X, y), then fit it on all of (X, y).

    ``calibrate=True`` wraps the chosen estimator in Platt scaling fitted on cross-validated decision
    values (``CalibratedClassifierCV(ensemble=False)``, what ``SVC(probability=True)`` did before its
    deprecation): the final classifier is still trained on all of (X, y). Returns the fitted
    estimator and the chosen parameters.
    """
    cv = cv_splitter(y, seed)
    if cv is None or all(len(v) == 1 for v in grid.values()):
        best = {k: v[0] for k, v in grid.items()}
    else:
        search = GridSearchCV(estimator, grid, cv=cv, scoring="accuracy", refit=False, n_jobs=1)
        best = search.fit(X, y).best_params_
    model = clone(estimator).set_params(**best)
    if calibrate:
        if cv is None:
            raise ValueError("probability calibration needs at least 2 training images of every class")
        model = CalibratedClassifierCV(model, method="sigmoid", cv=cv, ensemble=False)
    return model.fit(X, y), dict(best)


def svm_classifier(seed: int) -> tuple[BaseEstimator, dict[str, list[Any]], bool]:
    """Standardise → SVC; grid over kernel (linear, RBF) and C; Platt-calibrated probabilities."""
    est = make_pipeline(StandardScaler(), SVC(random_state=seed))
    grid = {"svc__kernel": ["linear", "rbf"], "svc__C": [0.1, 1.0, 10.0]}
    return est, grid, True


class Baseline(ClassifierMixin, BaseEstimator, ABC):
    """A prior fingerprinting method as an image classifier with the scikit-learn estimator interface.

    ``images``: uint8 N×H×W or N×H×W×3; ``y``: labels of any hashable type (kept in ``classes_``,
    sorted, which is also the column order of ``predict_proba``). Subclasses implement ``features``
    (the representation), ``_fit_codes`` (training on integer class codes) and ``_proba``.

    A baseline whose learner is not tied to images (``array_inputs``: the CNN baselines) also takes
    float N×C×H×W or N×D arrays (``check_arrays``), e.g. artifacts: the same learner on another input
    (``manifpt.learners``). ``fit(..., X_val, y_val)`` gives such a learner its early-stopping set
    instead of one it carves from the training images; baselines that choose their parameters by
    internal cross-validation ignore it.
    """

    name: ClassVar[str] = "?"
    #: full citation of the paper the method follows (line breaks and indentation are normalised away)
    paper: ClassVar[str] = ""
    #: every way this implementation departs from that paper (reported with the results); a subclass
    #: may write them as a Markdown bullet list in one string, which becomes one item per bullet
    deviations: ClassVar[list[str]] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.paper = " ".join(cls.paper.split())
        if isinstance(cls.deviations, str):
            cls.deviations = bullets(cls.deviations)
    #: ``True`` when ``features`` is learned (a CNN's penultimate layer) and so needs ``fit`` first
    learned_features: ClassVar[bool] = False
    #: ``True`` when the learner also takes float arrays (``check_arrays``), not only uint8 images
    array_inputs: ClassVar[bool] = False

    @abstractmethod
    def features(self, images: np.ndarray) -> np.ndarray:
        """The method's representation of each image: float32 N×F."""

    @abstractmethod
    def _fit_codes(self, images: np.ndarray, codes: np.ndarray) -> None:
        """Train on images with integer labels 0..K−1 (``self.classes_`` is already set)."""

    @abstractmethod
    def _proba(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities float64 N×K, columns in ``classes_`` order."""

    def _inputs(self, x: np.ndarray) -> np.ndarray:
        """The image contract, or the array contract where the learner takes arrays."""
        x = np.asarray(x)
        if x.dtype != np.uint8 and self.array_inputs:
            return check_arrays(x)
        return check_images(x)

    def fit(self, images: np.ndarray, y: Any, X_val: np.ndarray | None = None, y_val: Any = None) -> Baseline:
        images = self._inputs(images)
        y = np.asarray(y)
        if len(y) != len(images):
            raise ValueError(f"{len(images)} images but {len(y)} labels")
        enc = LabelEncoder().fit(y)
        if len(enc.classes_) < 2:
            raise ValueError("need at least two classes to fit an attributor")
        self.classes_ = enc.classes_
        self._val = None
        if X_val is not None and len(X_val):
            X_val, y_val = self._inputs(X_val), np.asarray(y_val)
            unknown = sorted(set(y_val.tolist()) - set(enc.classes_.tolist()))
            if len(y_val) != len(X_val) or unknown or X_val.shape[1:] != images.shape[1:]:
                del self.classes_
                raise ValueError(f"validation set: {len(X_val)} inputs of shape {X_val.shape[1:]}, {len(y_val)} "
                                 f"labels, unknown classes {unknown[:3]}; training inputs are {images.shape[1:]}")
            self._val = (X_val, enc.transform(y_val).astype(np.int64))
        try:
            self._fit_codes(images, enc.transform(y).astype(np.int64))
        except BaseException:
            del self.classes_  # a failed fit must not look fitted
            raise
        finally:
            self._val = None
        return self

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "classes_")
        return self._proba(self._inputs(images))

    def predict(self, images: np.ndarray) -> np.ndarray:
        """The most probable class of each image (argmax of ``predict_proba``, so the two always agree)."""
        proba = self.predict_proba(images)  # first: an unfitted baseline raises NotFittedError there
        return self.classes_[proba.argmax(axis=1)]

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable record of the method: name, paper, parameters and deviations."""
        return {"baseline": self.name, "paper": self.paper, "params": self.get_params(),
                "deviations": list(self.deviations)}


class FeatureBaseline(Baseline):
    """A hand-crafted representation followed by a scikit-learn classifier chosen by internal CV.

    Subclasses implement ``features`` and ``_classifier`` (the estimator, its grid, and whether its
    probabilities need calibration). ``best_params_`` records what the internal CV chose.
    """

    seed: int

    @abstractmethod
    def _classifier(self, n_train: int) -> tuple[BaseEstimator, dict[str, list[Any]], bool]:
        """(estimator, parameter grid, calibrate probabilities?) for ``n_train`` training images."""

    def _fit_codes(self, images: np.ndarray, codes: np.ndarray) -> None:
        est, grid, calibrate = self._classifier(len(codes))
        self.model_, self.best_params_ = select_and_fit(est, grid, self.features(images), codes, self.seed,
                                                        calibrate)

    def _proba(self, images: np.ndarray) -> np.ndarray:
        p = self.model_.predict_proba(self.features(images))
        out = np.zeros((len(p), len(self.classes_)))
        out[:, self.model_.classes_] = p  # the model saw codes 0..K−1; keep columns aligned regardless
        return out
