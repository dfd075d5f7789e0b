"""Experiment presets (pydantic, YAML): which real sets, zoos, spaces, baselines and sizes."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..attribute.config import AttributorConfig
from ..cache import yaml_mapping
from ..errors import UsageError


class DatasetConfig(BaseModel):
    """One real training set and the zoo of generative models trained on it."""

    model_config = ConfigDict(extra="forbid")
    real: str  # a name of manifpt.datasets.REAL_SETS
    n: int | None = None  # real training images (seeded subset; None = the whole set)
    zoo: str  # a bundled zoo config name or a YAML path
    manifold_n: int | None = None  # real images forming the manifold (seeded subset of the training set)
    zoo_quality: bool = True  # the zoo's Fréchet distances (quality.json); the demo skips them


class ExperimentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    datasets: dict[str, DatasetConfig]
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    max_per_class: int | None = 500
    spaces: list[str] = Field(default_factory=lambda: ["rgb", "freq", "sl", "ssl"])
    space_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    baselines: list[str] | str = "all"
    baseline_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    attributor: AttributorConfig = Field(default_factory=AttributorConfig)
    layer_factors: list[str] = Field(default_factory=lambda: ["upsampling", "last_nl", "norm", "loss", "family"])
    density_sizes: list[int | str] = Field(default_factory=lambda: [1000, 5000, 20000, "all"])
    density_space: str = "rgb"
    projections: list[str] = Field(default_factory=lambda: ["nn1", "knn-mean", "local-affine", "autoencoder", "raw"])
    projection_spaces: list[str] = Field(default_factory=lambda: ["rgb", "freq"])
    projection_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    theory_space: str = "sl"
    theory_k: int = 3
    tsne_per_class: int = 100
    #: the open-set study's protocols (``manifpt.openset.protocol_splits``)
    openset_protocols: list[str] = Field(default_factory=lambda: ["random", "unseen-family", "unseen-train_data"])
    #: the robustness study's test perturbations, and its training augmentation (Wang20: JPEG q ∈ [30, 100],
    #: blur σ ∈ [0, 3]; as grids that avoid the test strengths, so that augmentation is not tuned on them)
    robustness_perturb: list[str] = Field(default_factory=lambda: ["jpeg:90,75,50", "resize:0.5", "blur:1"])
    robustness_augment: list[str] = Field(default_factory=lambda: ["jpeg:95,85,65,40,30", "blur:0.5,1.5,2.5"])
    #: the learner × input study (``manifpt.learners``): each learner on the artifacts of each space × projection
    #: (``raw``: the embedding itself, the raw control), their late fusion (``manifpt.fusion``) and these baselines
    #: on images, over enough seeds for paired tests
    grid_learners: list[str] = Field(default_factory=lambda: ["attributor", "linear", "wang20", "marra19"])
    grid_spaces: list[str] = Field(default_factory=lambda: ["rgb", "freq"])
    grid_projections: list[str] = Field(default_factory=lambda: ["nn1", "raw"])
    grid_baselines: list[str] = Field(default_factory=lambda: ["marra19", "wang20"])
    grid_seeds: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4])


def load_experiment_config(name_or_path: str | Path) -> ExperimentConfig:
    """A bundled preset (``default``, ``quick``, ``photos``, ``photos64``, ``tiny``, ``demo``) or a YAML file.

    ``extends: NAME`` (a preset or a file) starts from that preset: every top-level key given next to
    it replaces the preset's value as a whole (a mapping such as ``baseline_options`` is not merged).
    """
    return ExperimentConfig(**_preset_mapping(name_or_path, ()))


def _preset_mapping(name_or_path: str | Path, seen: tuple[str, ...]) -> dict[str, Any]:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        text = p.read_text()
    else:
        res = files("manifpt") / "configs" / f"experiments-{name_or_path}.yaml"
        if not res.is_file():
            raise UsageError(f"no experiment config '{name_or_path}': not a YAML file, nor a bundled preset "
                             "(default, quick, photos, photos64, tiny, demo)")
        text = res.read_text()
    data = yaml_mapping(text, name_or_path)
    base = data.pop("extends", None)
    if base is None:
        return data
    if str(base) in seen or str(base) == str(name_or_path):
        raise UsageError(f"{name_or_path}: 'extends: {base}' makes a cycle ({' → '.join([*seen, str(name_or_path)])})")
    return {**_preset_mapping(base, (*seen, str(name_or_path))), **data}
