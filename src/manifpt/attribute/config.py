"""The attributor's settings, owned in one place: `fit`, `compare`, the experiment presets and the CLI
all embed this model, so a setting is declared, defaulted and validated once, and a misspelt key in
a YAML file is an error instead of a silently ignored line.

What is not here on purpose: the seed (each run's seeds are a list, one attributor per seed), the
input shape (read off the artifacts) and the coordinate channels (a capability of the embedding
space, ``Space.positional``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: the keys of AttributorConfig that older flat configs (run.json before 2026-12, compare YAMLs) held
#: at their top level; ``nest_attributor_keys`` moves them into ``attributor``
FLAT_KEYS = ("arch", "epochs", "batch_size", "lr", "weight_decay", "patience", "pretrained", "depth",
             "max_train_seconds", "device")


class AttributorConfig(BaseModel):
    """Architecture and training recipe of the ManiFPT attributor (``manifpt.attribute.Attributor``)."""

    model_config = ConfigDict(extra="forbid")
    #: auto (ResNet50 on a GPU for image-shaped artifacts, CIFAR ResNet on CPU, MLP for vectors),
    #: resnet50, resnet18, cifar_resnet, mlp or linear
    arch: str = "auto"
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float | None = Field(None, gt=0)  # None: 1e-3 from scratch, 1e-4 when ImageNet-initialised
    weight_decay: float = Field(5e-4, ge=0)
    patience: int = Field(6, ge=1)  # epochs without a better validation accuracy before stopping
    pretrained: bool = True  # ImageNet initialisation where the architecture and its weights allow
    depth: int = Field(3, ge=1)  # CIFAR-ResNet blocks per stage (3 = the authors' ResNet-20; 1 is CPU-sized)
    max_train_seconds: float | None = Field(None, gt=0)
    device: str | None = None  # None: CUDA when present


def nest_attributor_keys(data: Any) -> Any:
    """A ``model_validator(mode="before")`` body: flat attributor keys (the older layout) move into
    ``attributor``; giving one both ways is an error."""
    if not isinstance(data, dict):
        return data
    flat = {k: data[k] for k in FLAT_KEYS if k in data}
    if not flat:
        return data
    nested = data.get("attributor") or {}
    if not isinstance(nested, dict):
        return data
    both = sorted(set(flat) & set(nested))
    if both:
        raise ValueError(f"{', '.join(both)} given both at the top level and under 'attributor'")
    return {**{k: v for k, v in data.items() if k not in flat}, "attributor": {**nested, **flat}}


class WithAttributor(BaseModel):
    """Base of the configs that embed an ``attributor`` (fit, compare): reads the older flat layout too."""

    model_config = ConfigDict(extra="forbid")
    attributor: AttributorConfig = Field(default_factory=AttributorConfig)

    @model_validator(mode="before")
    @classmethod
    def _nest(cls, data: Any) -> Any:
        return nest_attributor_keys(data)
