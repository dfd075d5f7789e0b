"""The prior fingerprint methods of the paper's baselines (Appendix D), as image classifiers.

Usage::

    from manifpt.baselines import get_baseline, list_baselines
    clf = get_baseline("durall20", seed=0).fit(train_images, train_labels)
    pred = clf.predict(test_images)            # labels, as given to fit
    proba = clf.predict_proba(test_images)     # N×K, columns in clf.classes_ order
    feats = clf.features(test_images)          # float32 N×F: the method's representation (FD ratio, t-SNE)
    clf.deviations                             # how this implementation departs from its paper

Importing this package registers the hand-crafted ``mcclo18``, ``nataraj19``, ``durall20`` and
``dzanic20`` and the learned ``wang20``, ``marra18``, ``marra19`` and ``yu19``.
"""

from . import durall20, dzanic20, marra18, marra19, mcclo18, nataraj19, wang20, yu19
from .base import Baseline, FeatureBaseline, get_baseline, list_baselines, register_baseline
from .durall20 import Durall20
from .dzanic20 import Dzanic20
from .marra18 import Marra18
from .marra19 import Marra19
from .mcclo18 import McClo18
from .nataraj19 import Nataraj19, cooccurrence
from .wang20 import Wang20
from .yu19 import Yu19

__all__ = [
    "Baseline",
    "Durall20",
    "Dzanic20",
    "FeatureBaseline",
    "Marra18",
    "Marra19",
    "McClo18",
    "Nataraj19",
    "Wang20",
    "Yu19",
    "cooccurrence",
    "durall20",
    "dzanic20",
    "get_baseline",
    "list_baselines",
    "marra18",
    "marra19",
    "mcclo18",
    "nataraj19",
    "register_baseline",
    "wang20",
    "yu19",
]
