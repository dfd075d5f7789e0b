"""The zoo's recipe: which models to train, how long, on which real set, and what to write.

A config is YAML validated by pydantic (unknown keys are errors). ``models`` lists one entry per
model with its ``family`` and any family options (``upsampling: nearest_conv``, ...); ``defaults``
gives per-family values that every entry of that family inherits (an entry overrides them).
``train_data`` repeats some models on other real training sets (the training-set attribution
design): each listed model is trained once per set, named ``<model>__<set>``, and gets the set's
name as its ``train_data`` factor; every other model's ``train_data`` is the main real set's name.

Set specs (``train_data.sets`` values and a model's ``train_set``):

- ``real``: the real set handed to ``build_zoo``;
- ``real:K/N``: the K-th (0-based) of N disjoint, equal, seeded parts of it;
- a name from ``manifpt.datasets.REAL_SETS`` (``fmnist-a``, ``photos-b``, ...), loaded offline.

Bundled configs (``load_config("quick")``): ``default`` (the full benchmark, ~60–75 min on 2 CPU
cores), ``quick`` (``make demo``, ≤ ~5 min) and ``tiny`` (tests, seconds).
"""

from __future__ import annotations

import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .base import get_family

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ModelSpec(BaseModel):
    """One model: common training settings plus family options (everything else in the entry)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str
    family: str
    steps: int = Field(ge=0)
    batch_size: int = Field(64, ge=1)
    lr: float | None = None
    train_set: str = "real"
    train_data: str | None = None  # factor value; None → the main real set's name

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        if not NAME_RE.match(self.name):
            raise ValueError(f"model name '{self.name}' must be a folder name: letters, digits, _ . - "
                             "(not starting with _ or .)")
        get_family(self.family).Options(**self.options)  # unknown or invalid options fail here
        return self


class QualityConfig(BaseModel):
    """Fréchet distance of each model's samples to the real set in a fixed embedding space."""

    model_config = ConfigDict(extra="forbid")
    space: str | None = "sl"  # None disables quality.json
    space_options: dict[str, Any] = Field(default_factory=lambda: {"resolution": 64})
    n_real: int = 2000
    n_gen: int = 1000


class TrainDataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sets: dict[str, str] = Field(default_factory=dict)  # factor value → set spec
    models: list[str] = Field(default_factory=list)


class ZooConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "zoo"
    seed: int = 0
    real_n: int | None = None  # use a seeded subset of the real set for training (None: all of it)
    samples_per_model: int = 1000
    sample_batch: int = 250
    ckpt_every: int = 250
    grid: int = 64  # samples per grid image (a square number)
    #: parallel training processes on CPU (0: one per core); on GPU models train one after another.
    workers: int = 0
    #: torch threads per worker on CPU; fixed so results do not depend on ``workers``.
    threads_per_worker: int = 1
    quality: QualityConfig = Field(default_factory=QualityConfig)
    defaults: dict[str, dict[str, Any]] = Field(default_factory=dict)
    models: list[dict[str, Any]]
    train_data: TrainDataConfig = Field(default_factory=TrainDataConfig)

    @model_validator(mode="after")
    def _check(self) -> ZooConfig:
        specs = self.specs()
        names = [s.name for s in specs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate model names: {', '.join(dup)}")
        for key, spec in self.train_data.sets.items():
            if not NAME_RE.match(key):
                raise ValueError(f"train_data set name '{key}' must be a folder-safe name")
            check_set_spec(spec)
        for s in specs:
            check_set_spec(s.train_set)
        return self

    def specs(self) -> list[ModelSpec]:
        """Every model to build, family defaults merged in, train-data copies appended."""
        out = []
        for entry in self.models:
            fam = entry.get("family")
            out.append(ModelSpec(**{**self.defaults.get(str(fam), {}), **entry}))
        for base in self.train_data.models:
            spec = next((s for s in out if s.name == base), None)
            if spec is None:
                raise ValueError(f"train_data.models not in models: {base}")
            for set_name, set_spec in self.train_data.sets.items():
                out.append(spec.model_copy(update={"name": f"{base}__{set_name}", "train_set": set_spec,
                                                   "train_data": set_name}))
        return out


def check_set_spec(spec: str) -> None:
    from ..datasets import REAL_SETS

    if spec == "real" or spec in REAL_SETS:
        return
    m = re.fullmatch(r"real:(\d+)/(\d+)", spec)
    if m and int(m[1]) < int(m[2]):
        return
    raise ValueError(f"bad training-set spec '{spec}': use 'real', 'real:K/N' (K < N) or one of "
                     f"{', '.join(REAL_SETS)}")


def bundled_configs() -> list[str]:
    return sorted(p.name[len("zoo-"):-len(".yaml")] for p in _config_dir().iterdir()
                  if p.name.startswith("zoo-") and p.name.endswith(".yaml"))


def _config_dir() -> Traversable:
    # package data of ``manifpt`` (pyproject: configs/*.yaml), so installed code finds the YAML files
    return resources.files("manifpt") / "configs"


def load_config(name_or_path: str | Path) -> ZooConfig:
    """A bundled config by name (``default``, ``quick``, ``tiny``) or a YAML file path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        text = p.read_text()
    else:
        res = _config_dir() / f"zoo-{name_or_path}.yaml"
        if not res.is_file():
            raise FileNotFoundError(f"no zoo config '{name_or_path}': not a file, and not one of the bundled "
                                    f"configs ({', '.join(bundled_configs())})")
        text = res.read_text()
    return ZooConfig(**(yaml.safe_load(text) or {}))
