"""Training states that survive interruption: the tensors, optimizer state and data position of a run.

    task_state(model, task)             the tensors one task owns: its scores or alphas in every
                                        mask layer and its BatchNorm statistics (live references)
    load_task_state(model, task, t)     copy saved tensors back into those places
    save_state(path, tensors, ...)      one safetensors file, written atomically: named tensors,
                                        the optimizer's state (its tensors as tensors, the rest
                                        as JSON) and a JSON position; no pickle anywhere
                                        (`state_bytes` / `parse_state`: the same in memory)
    load_state(path)                    the same, read back
    FileCheckpoint(path)                where a state is kept: load / save (atomic) / clear

`training.fit(..., checkpoint=, every=)` saves and resumes through these.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn
from torch import Tensor

from ..files import atomic_write, read_header, read_safetensors, safetensors_bytes
from ..layers import ImpressLayer, SupermaskLayer, TaskBatchNorm2d, task_modules

STATE_KEY = "impresslearn-train-state"
STATE_VERSION = 1
BN_KEYS = ("running_mean", "running_var", "num_batches_tracked")


def task_state(model: nn.Module, task: int) -> dict[str, Tensor]:
    """Everything task `task` owns, by name: scores (SupSup layers), alpha (Impress layers), BatchNorm
    statistics. The tensors are the model's own, so saving them saves the task and copying into
    them restores it."""
    out: dict[str, Tensor] = {}
    for name, m in task_modules(model):
        if isinstance(m, SupermaskLayer):
            out[f"{name}.scores"] = m.scores[task]
        elif isinstance(m, ImpressLayer):
            out[f"{name}.alpha"] = m.alpha[task]
        elif isinstance(m, TaskBatchNorm2d):
            for key in BN_KEYS:
                out[f"{name}.{key}"] = getattr(m.bns[task], key)
    return out


@torch.no_grad()
def load_task_state(model: nn.Module, task: int, tensors: dict[str, Tensor], *, strict: bool = True) -> None:
    live = task_state(model, task)
    missing = set(live) - set(tensors)
    if strict and missing:
        raise KeyError(f"saved task state lacks {sorted(missing)[:5]}")
    for k, t in live.items():
        if k in tensors:
            if tensors[k].shape != t.shape:
                raise ValueError(f"saved {k} has shape {tuple(tensors[k].shape)}, the model's {tuple(t.shape)}")
            t.copy_(tensors[k])


# --------------------------------------------------------------------------- state files

def _split_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, entries in sd["state"].items():
        for key, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"opt.{idx}.{key}"] = value
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _join_optimizer(tensors: dict[str, Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for name, value in meta["scalars"].items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def state_bytes(tensors: dict[str, Tensor], *, optimizer: torch.optim.Optimizer | None = None,
                position: dict | None = None) -> bytes:
    """Named tensors, an optimizer's state and a JSON-serialisable position as safetensors bytes."""
    if any(k.startswith("opt.") for k in tensors):
        raise ValueError("tensor names starting with 'opt.' are reserved for the optimizer state")
    blob = dict(tensors)
    header = {"version": STATE_VERSION, "position": position or {}, "optimizer": None}
    if optimizer is not None:
        opt_tensors, header["optimizer"] = _split_optimizer(optimizer)
        blob.update(opt_tensors)
    return safetensors_bytes(blob, STATE_KEY, header)


def parse_state(data: bytes, name: str = "state") -> tuple[dict[str, Tensor], dict | None, dict]:
    """(named tensors, optimizer state dict or None, position) from `state_bytes` output."""
    tensors, meta = read_safetensors(data, name, "training state")
    header = read_header(meta, STATE_KEY, STATE_VERSION, name, "training state", field="version")
    own = {k: v for k, v in tensors.items() if not k.startswith("opt.")}
    opt = _join_optimizer(tensors, header["optimizer"]) if header["optimizer"] is not None else None
    return own, opt, header["position"]


def save_state(path: str | os.PathLike, tensors: dict[str, Tensor], *, optimizer: torch.optim.Optimizer | None = None,
               position: dict | None = None) -> None:
    """`state_bytes` written to `path` atomically."""
    FileCheckpoint(path).save(state_bytes(tensors, optimizer=optimizer, position=position))


def load_state(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict | None, dict]:
    return parse_state(Path(path).read_bytes(), str(path))


class FileCheckpoint:
    """Where a training state lives: `load()` the bytes (None if nothing was saved), `save(bytes)`
    atomically, `clear()`. Subclasses decide who reads and writes when several processes train
    together (`impresslearn.experiments.split.SharedCheckpoint`)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def load(self) -> bytes | None:
        return self.path.read_bytes() if self.path.exists() else None

    def save(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, data)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
