"""Training checkpoints without pickle: one safetensors file holds the whole resumable state.

``checkpoint.safetensors`` stores every network's ``state_dict`` (``net.<name>.<key>``), every
optimiser's per-parameter tensors (``opt.<name>.<param index>.<key>``) and the CPU random generator's
state (``rng``); its string metadata holds the step, the optimisers' ``param_groups`` and any other
JSON state. Keeping everything in one file written under a temporary name and renamed makes a
checkpoint atomic: a killed run leaves either the previous checkpoint or the new one. ``state.json``
beside it is a human-readable copy of the metadata (never read back).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..cache import write_json
from .base import ZooModel

CHECKPOINT = "checkpoint.safetensors"


def _state_tensors(model: ZooModel, gen: torch.Generator) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    for name, net in model.networks().items():
        for k, v in net.state_dict().items():
            tensors[f"net.{name}.{k}"] = v.detach().cpu().contiguous().clone()
    groups: dict[str, Any] = {}
    scalars: dict[str, Any] = {}
    for name, opt in model.optimizers().items():
        sd = opt.state_dict()
        groups[name] = sd["param_groups"]
        for pid, st in sd["state"].items():
            for k, v in st.items():
                if torch.is_tensor(v):
                    tensors[f"opt.{name}.{pid}.{k}"] = v.detach().cpu().contiguous().clone()
                else:
                    scalars[f"{name}.{pid}.{k}"] = v
    tensors["rng"] = gen.get_state().clone()
    return tensors, {"param_groups": groups, "opt_scalars": scalars}


def save_checkpoint(folder: str | Path, model: ZooModel, gen: torch.Generator, step: int,
                    meta: dict[str, Any]) -> None:
    """Write ``folder/checkpoint.safetensors`` atomically (+ ``state.json``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors, opt_meta = _state_tensors(model, gen)
    state = {**meta, "step": step, **opt_meta}
    path = folder / CHECKPOINT
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_file(tensors, str(tmp), metadata={"state": json.dumps(state, sort_keys=True, default=str)})
    os.replace(tmp, path)
    write_json(folder / "state.json", state)


def read_state(folder: str | Path) -> dict[str, Any] | None:
    """The metadata of ``folder``'s checkpoint, or ``None`` when there is none."""
    path = Path(folder) / CHECKPOINT
    if not path.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return json.loads((fh.metadata() or {})["state"])


def load_checkpoint(folder: str | Path, model: ZooModel, gen: torch.Generator) -> dict[str, Any]:
    """Restore networks, optimisers and the generator from ``folder``; return the metadata."""
    path = Path(folder) / CHECKPOINT
    state = read_state(folder)
    assert state is not None, f"{path}: no checkpoint"
    tensors = load_file(str(path))
    for name, net in model.networks().items():
        prefix = f"net.{name}."
        net.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=True)
    for name, opt in model.optimizers().items():
        per_param: dict[int, dict[str, Any]] = {}
        prefix = f"opt.{name}."
        for k, v in tensors.items():
            if k.startswith(prefix):
                pid, key = k[len(prefix):].split(".", 1)
                per_param.setdefault(int(pid), {})[key] = v
        for k, v in state["opt_scalars"].items():
            oname, pid, key = k.split(".", 2)
            if oname == name:
                per_param.setdefault(int(pid), {})[key] = v
        opt.load_state_dict({"state": per_param, "param_groups": state["param_groups"][name]})
    gen.set_state(tensors["rng"])
    return state
