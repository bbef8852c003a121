"""Checkpoints of a converted model's masks, basis, alphas and per-task BatchNorm statistics.

Written with safetensors (no pickle on load) and a JSON header under the metadata key
"impresslearn" holding the format version and, per layer, its kind, weight shape, backbone
init and seed, density and task count. The frozen weights are rebuilt from their seeds on
load unless the file includes them (`include_weights=True`, needed for `init="keep"` layers).
Saves are atomic: the file is written beside the target and renamed over it.

Tensor names, for a layer with qualified name `L`:
    L.masks        SupermaskLinear/Conv2d: int32 packed masks [tasks, rows, nw]
    L.scores       the same layers' float scores [tasks, *shape] (include_scores=True)
    L.basis        ImpressLinear/Conv2d: int32 packed basis [T, rows, nw]
    L.alpha        the same layers' alphas [tasks, T] or [tasks, T, rows]
    L.weight, L.bias                      frozen backbone (include_weights=True)
    L.running_mean / running_var / num_batches_tracked   TaskBatchNorm2d, stacked over tasks
    state.K        every other entry K of the model's state_dict (unconverted modules)
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn as nn

from .files import CheckpointError, atomic_write, read_header, read_safetensors, safetensors_bytes
from .format import PackedMasks
from .layers import BackboneLayer, ImpressLayer, SupermaskLayer, TaskBatchNorm2d, task_modules

__all__ = ["CheckpointError", "FORMAT_VERSION", "load_checkpoint", "read_checkpoint", "save_checkpoint"]

FORMAT_VERSION = 1
META_KEY = "impresslearn"


def _layer_record(layer: nn.Module) -> dict[str, Any]:
    rec: dict[str, Any] = {"kind": type(layer).__name__, "num_tasks": layer.num_tasks}
    if isinstance(layer, BackboneLayer):
        rec.update(shape=list(layer.weight.shape), init=layer.init, seed=layer.seed,
                   scale_density=layer.scale_density, bias=layer.bias is not None)
    if isinstance(layer, SupermaskLayer):
        rec.update(density=layer.density, mask=layer.mask_mode)
    if isinstance(layer, ImpressLayer):
        rec.update(basis_size=layer.basis_size, per_channel=layer.per_channel)
    return rec


def save_checkpoint(path: str | os.PathLike, model: nn.Module, *, metadata: dict | None = None,
                    include_weights: bool = False, include_scores: bool = False) -> None:
    """Save `model`'s masks, bases, alphas and per-task BatchNorm statistics to `path` atomically.

    metadata: any JSON-serialisable dict kept with the file (experiment config, seeds, ...).
    """
    tensors: dict[str, torch.Tensor] = {}
    layers: dict[str, dict] = {}
    owned: set[str] = set()
    for name, m in task_modules(model):
        layers[name] = rec = _layer_record(m)
        prefix = f"{name}." if name else ""
        owned.update(prefix + k for k in m.state_dict())
        if isinstance(m, BackboneLayer) and (include_weights or m.init == "keep"):
            rec["weights_included"] = True
            tensors[prefix + "weight"] = m.weight
            if m.bias is not None:
                tensors[prefix + "bias"] = m.bias
        if isinstance(m, SupermaskLayer):
            tensors[prefix + "masks"] = m.export_masks().words
            if include_scores:
                tensors[prefix + "scores"] = torch.stack([s.detach() for s in m.scores])
        if isinstance(m, ImpressLayer):
            tensors[prefix + "basis"] = m.basis_words
            tensors[prefix + "alpha"] = torch.stack([a.detach() for a in m.alpha])
        if isinstance(m, TaskBatchNorm2d):
            for key in ("running_mean", "running_var", "num_batches_tracked"):
                tensors[prefix + key] = torch.stack([getattr(bn, key) for bn in m.bns])
    for key, value in model.state_dict().items():
        if key not in owned:
            tensors["state." + key] = value
    header = {"format_version": FORMAT_VERSION, "layers": layers, "metadata": metadata or {}}
    atomic_write(path, safetensors_bytes(tensors, META_KEY, header))


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """The header and the tensors of a checkpoint file, after checking its format version."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    tensors, raw_meta = read_safetensors(data, path, "checkpoint")
    header = read_header(raw_meta, META_KEY, FORMAT_VERSION, path, "checkpoint")
    return header, tensors


@torch.no_grad()
def load_checkpoint(path: str | os.PathLike, model: nn.Module) -> dict:
    """Load a checkpoint into `model` (built with the same architecture and converted alike).

    Task counts and bases are resized to the file's; the backbone is rebuilt from the stored
    seeds unless the file holds the weights. Returns the metadata dict given at save time.
    """
    header, tensors = read_checkpoint(path)
    modules = dict(task_modules(model))
    missing = set(header["layers"]) - set(modules)
    extra = set(modules) - set(header["layers"])
    if missing or extra:
        raise CheckpointError(f"checkpoint layers do not match the model: missing in model {sorted(missing)}, "
                              f"not in checkpoint {sorted(extra)}")
    for name, rec in header["layers"].items():
        _load_layer(name, modules[name], rec, tensors, f"{name}." if name else "")
    state = {k[len("state."):]: v for k, v in tensors.items() if k.startswith("state.")}
    if state:
        result = model.load_state_dict(state, strict=False)
        if result.unexpected_keys:
            raise CheckpointError(f"checkpoint entries the model does not have: {result.unexpected_keys}")
    return header.get("metadata", {})


def _load_layer(name: str, m: nn.Module, rec: dict, tensors: dict, prefix: str) -> None:
    if type(m).__name__ != rec["kind"]:
        raise CheckpointError(f"layer {name!r} is a {type(m).__name__} in the model but a {rec['kind']} in the checkpoint")
    if isinstance(m, BackboneLayer):
        if list(m.weight.shape) != rec["shape"]:
            raise CheckpointError(f"layer {name!r}: weight shape {list(m.weight.shape)} != checkpoint {rec['shape']}")
        m.init, m.seed, m.scale_density = rec["init"], rec["seed"], rec["scale_density"]
        if rec.get("weights_included"):
            m.weight.copy_(tensors[prefix + "weight"])
            if m.bias is not None:
                m.bias.copy_(tensors[prefix + "bias"])
        else:
            m.reset_backbone()
    device = next(iter(m.buffers())).device
    if isinstance(m, SupermaskLayer):
        m.density, m.mask_mode = rec["density"], rec["mask"]
        words = tensors[prefix + "masks"].to(device)
        m.load_masks(PackedMasks(words, m.weight.shape))
        if prefix + "scores" in tensors:
            for s, saved in zip(m.scores, tensors[prefix + "scores"]):
                s.copy_(saved)
    if isinstance(m, ImpressLayer):
        m.basis_words = tensors[prefix + "basis"].to(device)
        m.per_channel = rec["per_channel"]
        m.alpha = nn.ParameterList()
        m._init_tasks()
        for a in tensors[prefix + "alpha"]:
            m.add_task(init=a)
    if isinstance(m, TaskBatchNorm2d):
        m.set_num_tasks(rec["num_tasks"])
        for t, bn in enumerate(m.bns):
            for key in ("running_mean", "running_var", "num_batches_tracked"):
                getattr(bn, key).copy_(tensors[prefix + key][t])
