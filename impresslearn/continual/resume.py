"""Training that survives interruption: step checkpoints with optimizer state and data position.

    task_state(model, task)             the tensors one task owns: its scores or alphas in every
                                        mask layer and its BatchNorm statistics (live references)
    load_task_state(model, task, t)     copy saved tensors back into those places
    save_state(path, tensors, ...)      one safetensors file, written atomically: named tensors,
                                        the optimizer's state (its tensors as tensors, the rest
                                        as JSON) and a JSON position; no pickle anywhere
                                        (`state_bytes` / `parse_state`: the same in memory)
    load_state(path)                    the same, read back
    FileCheckpoint(path)                where a state is kept: load / save (atomic) / clear
    fit_resumable(model, params, batches, cfg, checkpoint=, every=)
                                        the minibatch loop of `training.fit`, saving its state
                                        every `every` steps and continuing from the saved state
                                        when there is one; the result is the same as an
                                        uninterrupted run's (data order and augmentation are
                                        functions of seed, epoch and sample: `SplitBatches`)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn
from torch import Tensor
from tqdm.auto import tqdm

from ..files import atomic_write, read_header, read_safetensors, safetensors_bytes
from ..layers import ImpressLayer, SupermaskLayer, TaskBatchNorm2d, task_modules
from .training import TrainConfig, _objective, make_optimizer, num_steps

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


def state_bytes(tensors: dict[str, Tensor], *, optimizer: Optional[torch.optim.Optimizer] = None,
                position: Optional[dict] = None) -> bytes:
    """Named tensors, an optimizer's state and a JSON-serialisable position as safetensors bytes."""
    if any(k.startswith("opt.") for k in tensors):
        raise ValueError("tensor names starting with 'opt.' are reserved for the optimizer state")
    blob = dict(tensors)
    header = {"version": STATE_VERSION, "position": position or {}, "optimizer": None}
    if optimizer is not None:
        opt_tensors, header["optimizer"] = _split_optimizer(optimizer)
        blob.update(opt_tensors)
    return safetensors_bytes(blob, STATE_KEY, header)


def parse_state(data: bytes, name: str = "state") -> tuple[dict[str, Tensor], Optional[dict], dict]:
    """(named tensors, optimizer state dict or None, position) from `state_bytes` output."""
    tensors, meta = read_safetensors(data, name, "training state")
    header = read_header(meta, STATE_KEY, STATE_VERSION, name, "training state", field="version")
    own = {k: v for k, v in tensors.items() if not k.startswith("opt.")}
    opt = _join_optimizer(tensors, header["optimizer"]) if header["optimizer"] is not None else None
    return own, opt, header["position"]


def save_state(path: str | os.PathLike, tensors: dict[str, Tensor], *, optimizer: Optional[torch.optim.Optimizer] = None,
               position: Optional[dict] = None) -> None:
    """`state_bytes` written to `path` atomically."""
    FileCheckpoint(path).save(state_bytes(tensors, optimizer=optimizer, position=position))


def load_state(path: str | os.PathLike) -> tuple[dict[str, Tensor], Optional[dict], dict]:
    return parse_state(Path(path).read_bytes(), str(path))


class FileCheckpoint:
    """Where a training state lives: `load()` the bytes (None if nothing was saved), `save(bytes)`
    atomically, `clear()`. Subclasses decide who reads and writes when several processes train
    together (`impresslearn.split_experiment.SharedCheckpoint`)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def load(self) -> Optional[bytes]:
        return self.path.read_bytes() if self.path.exists() else None

    def save(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, data)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- the loop

def fit_resumable(model: nn.Module, params: Sequence[Tensor], batches, cfg: TrainConfig, *,
                  penalty: Optional[Callable[[], Tensor]] = None, state: Optional[dict[str, Tensor]] = None,
                  checkpoint: Optional[FileCheckpoint | str | os.PathLike] = None, every: int = 0,
                  desc: str = "train", progress: Optional[bool] = None) -> dict:
    """Minimise cross-entropy (+ `penalty()`) over `batches` in `params`, as `training.fit` does
    for minibatch optimizers, saving its state to `checkpoint` (a path or a `FileCheckpoint`)
    every `every` steps (0: never).

    `state`: the named tensors to save and restore with the optimizer (by default `params`
    by position); include whatever else training changes, such as BatchNorm statistics.
    `batches` must offer `epoch_iter(epoch, start)` (e.g. `SplitBatches`). If the checkpoint
    holds a state, training continues from it. `model` may be a DistributedDataParallel wrapper.
    Returns the step count, the mean loss of the last epoch and the step it resumed from.
    """
    params = list(params)
    if not params:
        raise ValueError("nothing to train: no parameters given")
    if cfg.optimizer == "lbfgs":
        raise ValueError("resumable training takes minibatch optimizers (adam, rmsprop, sgd), not lbfgs")
    if not hasattr(batches, "epoch_iter"):
        raise TypeError("resumable training needs batches with epoch_iter(epoch, start), e.g. SplitBatches")
    if every < 0:
        raise ValueError(f"every must be >= 0, got {every}")
    if len(batches) == 0:
        raise ValueError("no batches to train on")
    state = state if state is not None else {f"param.{i}": p for i, p in enumerate(params)}
    opt = make_optimizer(params, cfg)
    steps = num_steps(cfg, len(batches))
    pos = {"step": 0, "epoch": 0, "batch": 0, "losses": []}
    if checkpoint is not None and not isinstance(checkpoint, FileCheckpoint):
        checkpoint = FileCheckpoint(checkpoint)
    data = checkpoint.load() if checkpoint is not None else None
    if data is not None:
        saved, opt_state, pos = parse_state(data, str(checkpoint.path))
        with torch.no_grad():
            for k, t in state.items():
                t.copy_(saved[k])
        opt.load_state_dict(opt_state)
    resumed_from = pos["step"]
    model.train()
    bar = tqdm(total=steps, initial=pos["step"], desc=desc, leave=False,
               disable=None if progress is None else not progress, mininterval=1.0)
    step, epoch, batch, losses = pos["step"], pos["epoch"], pos["batch"], list(pos["losses"])
    while step < steps:
        if batch == 0:
            losses = []
        for x, y in batches.epoch_iter(epoch, batch):
            loss = _objective(model, x, y, penalty)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step, batch = step + 1, batch + 1
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.3f}")
            if step >= steps:
                break
            if checkpoint is not None and every and step % every == 0:
                checkpoint.save(state_bytes(state, optimizer=opt, position={"step": step, "epoch": epoch,
                                                                             "batch": batch, "losses": losses}))
        else:
            epoch, batch = epoch + 1, 0
    bar.close()
    return {"steps": steps, "loss": sum(losses) / max(1, len(losses)), "resumed_from": resumed_from}
