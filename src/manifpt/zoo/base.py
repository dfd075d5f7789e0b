"""The interface every generative-model family implements, and the family registry.

A family is one module with one ``@register_family("name")`` class; adding a family means adding
that file and its module name to ``FAMILY_MODULES`` below (``manifpt.registry`` imports them on first
lookup, so the heavy ``diffusers`` import only happens when a family is looked up).

The build loop (``manifpt.zoo.build``) owns everything generic: data batches, checkpoints, resume,
sampling to PNG. A family owns only its networks, optimisers, one training step and sampling. All
randomness flows through the ``torch.Generator`` it is handed (a CPU generator whose state is
checkpointed), so a resumed run replays exactly the random numbers of an uninterrupted one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from ..registry import Registry

#: module (inside manifpt.zoo) → imported on first use; one line per family.
FAMILY_MODULES: tuple[str, ...] = ("gan", "vae", "flow", "diffusion", "pixelcnn")

#: every family, by name (``get_family``); its modules are imported on first lookup
FAMILIES: Registry[type[ZooModel]] = Registry("model family", [f"manifpt.zoo.{m}" for m in FAMILY_MODULES],
                                              attr="family_key")

Batch = Callable[[], torch.Tensor]


class FamilyOptions(BaseModel):
    """Base of every family's options (unknown keys are errors, so typos in a config fail early)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ZooModel(ABC):
    """One trainable generative model.

    ``shape`` is (C, H, W). Training batches are float tensors in [0, 1] on ``device``; each family
    rescales as it needs. ``sample`` returns uint8 N×H×W (gray) or N×H×W×3.
    """

    #: display name, set by ``@register_family``
    family: ClassVar[str] = "?"
    #: library and architecture, recorded in models.yaml (e.g. "manifpt DCGAN").
    architecture: ClassVar[str] = "?"
    Options: ClassVar[type[FamilyOptions]] = FamilyOptions
    #: default learning rate when the config gives none.
    default_lr: ClassVar[float] = 2e-4

    #: the attributes holding the checkpointed networks (checkpoint key = attribute name)
    NETWORKS: ClassVar[tuple[str, ...]] = ()
    #: the ones that produce samples (their parameter count is the model's ``params``); () = all
    SAMPLERS: ClassVar[tuple[str, ...]] = ()
    #: design factors of families whose factors do not depend on options (others override ``factors``)
    FACTORS: ClassVar[dict[str, str]] = {}

    def __init__(self, options: FamilyOptions, shape: tuple[int, int, int], device: torch.device, lr: float):
        self.options, self.shape, self.device, self.lr = options, shape, device, lr
        #: completed training steps; set by the build loop before each ``train_step`` (warm-up, EMA).
        self.current_step = 0
        self.build()

    # -- what the build loop needs ---------------------------------------------------------
    @abstractmethod
    def build(self) -> None:
        """Create the networks named in ``NETWORKS`` and the optimiser ``self.opt`` (or override
        ``optimizers``); ``options``, ``shape``, ``device`` and ``lr`` are set."""

    def networks(self) -> dict[str, nn.Module]:
        """Every module whose state is checkpointed (name → module)."""
        return {a: getattr(self, a) for a in self.NETWORKS}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimiser whose state is checkpointed."""
        return {"opt": self.opt}

    @abstractmethod
    def train_step(self, batch: Batch, gen: torch.Generator) -> dict[str, float]:
        """One optimisation step; ``batch()`` draws a fresh real batch. Returns losses for display."""

    @abstractmethod
    def sample(self, n: int, gen: torch.Generator) -> np.ndarray:
        """``n`` images as uint8 N×H×W(×3), drawn with ``gen`` only."""

    def factors(self) -> dict[str, str]:
        """Design factors: upsampling, loss, norm, last_nl (``n/a`` where a factor does not apply)."""
        return dict(self.FACTORS)

    def sampling_networks(self) -> list[nn.Module]:
        """The networks that produce samples (their parameter count is the model's ``params``)."""
        return [getattr(self, a) for a in self.SAMPLERS or self.NETWORKS]

    def after_step(self, step: int) -> None:  # noqa: B027 - optional hook (e.g. EMA update)
        """Called after each training step with the new step count."""

    # -- helpers ---------------------------------------------------------------------------
    def randn(self, gen: torch.Generator, *shape: int) -> torch.Tensor:
        """Standard normal noise drawn on the CPU generator, moved to the device (same on CPU and GPU)."""
        return torch.randn(*shape, generator=gen).to(self.device)

    def rand(self, gen: torch.Generator, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen).to(self.device)

    def train(self, mode: bool = True) -> None:
        for net in self.networks().values():
            net.train(mode)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Float N×C×H×W in [0, 1] → uint8 N×H×W(×C) with rounding (not truncation)."""
    arr = (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return arr[:, 0] if arr.shape[1] == 1 else arr.transpose(0, 2, 3, 1)


#: ``get_family(name)`` (the class, by its name in lower case), ``list_families()``
get_family, list_families = FAMILIES.get, FAMILIES.names


def register_family(name: str) -> Callable[[type[ZooModel]], type[ZooModel]]:
    """``@register_family("GAN")``: ``name`` is the family's display name (``ZooModel.family``, in
    models.yaml and tables); configs and ``get_family`` use it in lower case."""
    def deco(cls: type[ZooModel]) -> type[ZooModel]:
        cls.family = name
        return FAMILIES.register(name)(cls)
    return deco


def parse_options(family: str, options: dict[str, Any]) -> FamilyOptions:
    """Validate a model's family options (unknown keys raise a pydantic ``ValidationError``)."""
    return get_family(family).Options(**options)
