"""Training states that survive interruption: the tensors, optimizer state and data position of a run.

    task_state(model, task)             the tensors one task owns: its scores or alphas in every
                                        mask layer and its BatchNorm statistics (live references)
    load_task_state(model, task, t)     copy saved tensors back into those places
    restore_tensors(live, saved, name)  the same for any named tensors: all checked, then copied
    save_state(path, tensors, ...)      one safetensors file, written atomically: named tensors,
                                        the optimizer's state (its tensors as tensors, the rest
                                        as JSON) and a JSON position; no pickle anywhere
                                        (`state_bytes` / `parse_state`: the same in memory)
    load_state(path)                    the same, read back
    FileCheckpoint(path)                where a state is kept: load / save (atomic) / clear

`training.fit(..., checkpoint=, every=)` saves and resumes through these. A state file holds the
SHA-256 of its header and of every tensor (version 2; version 1 files, without them, still load)
and is checked whole before anything is returned (docs/design.md §3.2).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn
from torch import Tensor

from ..files import (
    CheckpointError,
    atomic_write,
    check_entries,
    check_tensor,
    read_safetensors_file,
    read_verified,
    safetensors_bytes,
)
from ..layers import ImpressLayer, SupermaskLayer, TaskBatchNorm, TaskHeads, TaskStateLayer, task_modules

STATE_KEY = "impresslearn-train-state"
STATE_VERSION = 2  # 2: with checksums; 1 (read too): without
LEGACY_VERSIONS = (1,)
WHAT = "training state"
BN_KEYS = ("running_mean", "running_var", "num_batches_tracked")


def task_state(model: nn.Module, task: int) -> dict[str, Tensor]:
    """Everything task `task` owns, by name: scores (SupSup layers) or, once finished, its packed
    mask (`masks`), alpha (Impress layers), R (`logits`) or its stored soft mask (`kmask_bits`,
    `kmask_real`, kernel-mask layers), BatchNorm statistics, its head. The tensors are the
    model's own (for a finished task, views of its rows), so saving them saves the task and
    copying into them restores it (docs/design.md §4.4)."""
    out: dict[str, Tensor] = {}
    for name, m in task_modules(model):
        if isinstance(m, TaskStateLayer) and not m.is_finished(task):
            key = "scores" if isinstance(m, SupermaskLayer) else "alpha" if isinstance(m, ImpressLayer) else "logits"
            out[f"{name}.{key}"] = m.task_floats(task)
        elif isinstance(m, SupermaskLayer):
            out[f"{name}.masks"] = m.masks[task]
        elif isinstance(m, ImpressLayer):
            out[f"{name}.alpha"] = m.alphas[task]
        elif isinstance(m, TaskStateLayer):
            out[f"{name}.kmask_bits"] = m.kmask_bits[task]
            if m.kmask_real.numel():
                out[f"{name}.kmask_real"] = m.kmask_real[task]
        elif isinstance(m, TaskHeads):
            for key, p in m.heads[task].named_parameters():
                out[f"{name}.heads.{key}"] = p
        elif isinstance(m, TaskBatchNorm):
            for key in BN_KEYS:
                out[f"{name}.{key}"] = getattr(m.bns[task], key)
    return out


@torch.no_grad()
def load_task_state(
    model: nn.Module, task: int, tensors: dict[str, Tensor], *, strict: bool = True, name: str = "saved task state"
) -> None:
    """Copy `tensors` (as `task_state` names them) into task `task` of `model`; see `restore_tensors`."""
    restore_tensors(task_state(model, task), tensors, name, strict=strict)


@torch.no_grad()
def restore_tensors(live: dict[str, Tensor], saved: dict[str, Tensor], name: str = "saved state", *, strict: bool = True) -> None:
    """Copy `saved[k]` into `live[k]` for every name, all or nothing: every entry is checked first
    (with `strict`, the names are exactly the live ones; each has the live tensor's shape and
    dtype), and a `CheckpointError` naming `name` and the entry leaves every live tensor as it was.
    Without `strict`, names missing on either side are skipped."""
    if strict:
        check_entries(saved, live, name, "")
    pairs = [(k, t) for k, t in live.items() if k in saved]
    for k, t in pairs:
        check_tensor(saved[k], k, name, "", dtype=t.dtype, shape=t.shape)
    moved = [(t, saved[k].to(t.device)) for k, t in pairs]
    for t, s in moved:
        t.copy_(s)


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


def _join_optimizer(tensors: dict[str, Tensor], meta, name: str) -> dict:
    """The optimizer state dict back from its tensors and JSON part, checked as it is rebuilt."""
    if not isinstance(meta, dict) or not isinstance(meta.get("param_groups"), list) or not isinstance(meta.get("scalars"), dict):
        raise CheckpointError(f"{WHAT} {name} has an invalid 'optimizer' in its header")
    state: dict[int, dict] = {}
    for entry, value in [*tensors.items(), *meta["scalars"].items()]:
        idx, _, key = entry.removeprefix("opt.").partition(".")
        if not idx.isdigit() or not key:
            where = f"entry {entry!r}" if isinstance(value, Tensor) else f"optimizer scalar {entry!r}"
            raise CheckpointError(f"{WHAT} {name} has an {where} that names no parameter of the optimizer")
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def state_bytes(
    tensors: dict[str, Tensor], *, optimizer: torch.optim.Optimizer | None = None, position: dict | None = None
) -> bytes:
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
    """(named tensors, optimizer state dict or None, position) from `state_bytes` output, checked
    whole (version, checksums, header fields, optimizer entries) before anything is returned."""
    header, tensors = read_verified(
        data, name, WHAT, STATE_KEY, (*LEGACY_VERSIONS, STATE_VERSION), legacy=LEGACY_VERSIONS, field="version"
    )
    if not isinstance(header.get("position"), dict):
        raise CheckpointError(f"{WHAT} {name} has no valid 'position' in its header")
    own = {k: v for k, v in tensors.items() if not k.startswith("opt.")}
    opt_tensors = {k: v for k, v in tensors.items() if k.startswith("opt.")}
    if header.get("optimizer") is None:
        if opt_tensors:
            raise CheckpointError(f"{WHAT} {name} has an unexpected entry {min(opt_tensors)!r} (it saved no optimizer)")
        opt = None
    else:
        opt = _join_optimizer(opt_tensors, header["optimizer"], name)
    return own, opt, header["position"]


def save_state(
    path: str | os.PathLike,
    tensors: dict[str, Tensor],
    *,
    optimizer: torch.optim.Optimizer | None = None,
    position: dict | None = None,
) -> None:
    """`state_bytes` written to `path` atomically."""
    FileCheckpoint(path).save(state_bytes(tensors, optimizer=optimizer, position=position))


def load_state(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict | None, dict]:
    return parse_state(read_safetensors_file(path, WHAT), str(path))


class FileCheckpoint:
    """Where a training state lives: `load()` the bytes (None if nothing was saved), `save(bytes)`
    atomically, `clear()`. Subclasses decide who reads and writes when several processes train
    together (`impresslearn.experiments.split.SharedCheckpoint`)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def load(self) -> bytes | None:
        return read_safetensors_file(self.path, WHAT) if self.path.exists() else None

    def save(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, data)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
