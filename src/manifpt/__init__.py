"""manifpt: manifold-based fingerprints of generative models (Song et al., ManiFPT).

Public API::

    from manifpt import get_space, Manifold
    space = get_space("rgb")                     # "freq", "sl", "ssl"
    m = Manifold(space).fit(real_images)          # uint8 N×H×W(×C) array or an ImageSet
    nn_index, nn_sqdist = m.project(gen_images)   # exact nearest real sample
    art = m.artifacts(gen_images)                 # embed(gen) − embed(real[nn_index])
"""

from .data import ArraySource, BadFile, BadImageError, GeneratedSet, ImageSet
from .manifold import Manifold
from .search import ExactKNN
from .spaces import Space, get_space, list_spaces, register_space

__version__ = "0.1.0"
__all__ = [
    "ArraySource",
    "BadFile",
    "BadImageError",
    "ExactKNN",
    "GeneratedSet",
    "ImageSet",
    "Manifold",
    "Space",
    "get_space",
    "list_spaces",
    "register_space",
]
