"""Attribution: classifiers of artifacts (``Attributor``) and their networks."""

from .attributor import Attributor, TrainConfig
from .nets import ARCHS, build_net

__all__ = ["ARCHS", "Attributor", "TrainConfig", "build_net"]
