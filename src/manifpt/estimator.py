"""The scikit-learn estimator conventions that the attributor and the baselines share.

Constructors only store their arguments (so ``get_params``/``clone`` work and one configured
estimator can be re-fitted per seed); fitted state ends in ``_``.
"""

from __future__ import annotations

from typing import Any


def store_params(est: Any, params: dict[str, Any]) -> None:
    """``__init__`` body of an estimator: keep every argument as given (``store_params(self, locals())``)."""
    for k, v in params.items():
        if k not in ("self", "__class__"):
            setattr(est, k, v)
