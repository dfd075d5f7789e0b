"""Shipped results of zoo builds: the sampling networks of finished models, named by their build key.

A model's build key (``build.run_job``) hashes its recipe, image shape, seed, training data (the
images' content fingerprint) and sample counts. A file ``<key>.safetensors`` here holds the trained
sampling networks of exactly that build — the quick zoo on Debian's Fashion-MNIST, built on the
project's 2-core CPU machine — so ``build_zoo`` can sample them instead of training (``make demo``
in seconds instead of minutes). The samples are then those of the build that made the file; a build
on other hardware may differ in the last bits, and ``retrain`` (``--retrain``) trains here anyway.
Anything that changes the key (another recipe, other data) finds no file and trains as before.

Loading reads safetensors only and checks every tensor's name, shape and dtype against the freshly
built network: a file that does not match is refused, never loaded with a cast.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save

from ..cache import atomic_write_bytes
from ..errors import DataError
from .base import FAMILIES, ZooModel

#: the weights that ship inside the package
PRETRAINED_DIR = Path(__file__).with_name("pretrained")


def _samplers(model: type[ZooModel] | ZooModel) -> tuple[str, ...]:
    return model.SAMPLERS or model.NETWORKS


def export_pretrained(gen: str | Path, dest: str | Path = PRETRAINED_DIR) -> list[Path]:
    """Write the sampling networks of every finished model of the zoo build ``gen`` to ``dest``."""
    written = []
    dest = Path(dest)
    for done in sorted(Path(gen, "_train").glob("*/done.json")):
        info = yaml.safe_load(done.read_text())
        family, cls = next((k, c) for k, c in FAMILIES.items() if c.family == info["family"])
        tensors = load_file(str(done.parent / "checkpoint.safetensors"))
        keep = {k: v for k, v in tensors.items() if any(k.startswith(f"net.{a}.") for a in _samplers(cls))}
        meta = {"name": info["name"], "family": family, "networks": json.dumps(_samplers(cls))}
        path = dest / f"{info['key']}.safetensors"
        atomic_write_bytes(path, save(keep, metadata=meta))
        written.append(path)
    return written


def load_pretrained(model: ZooModel, key: str, directory: str | Path = PRETRAINED_DIR) -> bool:
    """Load the shipped sampling networks of build ``key`` into ``model``; ``False`` when none ship."""
    path = Path(directory) / f"{key}.safetensors"
    if not path.is_file():
        return False
    try:
        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for a malformed file
        raise DataError(f"{path}: not a readable safetensors file ({e})") from None
    expected = {f"net.{a}.{k}": v for a in _samplers(model) for k, v in getattr(model, a).state_dict().items()}
    if meta.get("family") != model.family_key or set(tensors) != set(expected):  # type: ignore[attr-defined]
        raise DataError(f"{path}: does not hold the sampling networks of a {model.family_key} model "  # type: ignore[attr-defined]
                        f"(family {meta.get('family')!r}, {len(tensors)} tensors for {len(expected)})")
    for k, want in expected.items():
        got = tensors[k]
        if got.shape != want.shape or got.dtype != want.dtype:
            raise DataError(f"{path}: tensor {k} is {got.dtype} {tuple(got.shape)}, expected {want.dtype} "
                            f"{tuple(want.shape)}")
    for a in _samplers(model):
        prefix = f"net.{a}."
        getattr(model, a).load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    return True
