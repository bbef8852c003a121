"""Checkpoints of a converted model's masks, basis, alphas and per-task BatchNorm statistics.

Written with safetensors (no pickle on load) and a JSON header under the metadata key
"impresslearn" holding the format version and, per layer, its kind, weight shape, backbone
init and seed, density and task count. The frozen weights are rebuilt from their seeds on
load unless the file includes them (`include_weights=True`, needed for `init="keep"` layers).
Saves are atomic: the file is written beside the target and renamed over it. The header also
holds the SHA-256 of every tensor (format version 2; version 1 files have none and still load),
and loads are all or nothing: the whole file is checked against the model before any of it is
copied in (docs/design.md §3.2).

Tensor names, for a layer with qualified name `L`:
    L.masks        SupermaskLinear/Conv2d: int32 packed masks [tasks, rows, nw]
    L.scores       the same layers' float scores [tasks, *shape] (include_scores=True)
    L.basis        ImpressLinear/Conv2d: int32 packed basis [T, rows, nw]
    L.alpha        the same layers' alphas [tasks, T] or [tasks, T, rows]
    L.weight, L.bias                      frozen backbone (include_weights=True)
    L.trained      SupermaskLinear/Conv2d: the weights under the union of the stored masks, in flat
                   order (include_trained=True: ExSSNeT / SSNeT, whose weight phases change only
                   those; the rest is rebuilt from the seed)
    L.running_mean / running_var / num_batches_tracked   TaskBatchNorm2d, stacked over tasks
    state.K        every other entry K of the model's state_dict (unconverted modules)
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn as nn

from . import ops
from .files import CheckpointError, atomic_write, check_entries, check_tensor, read_verified, safetensors_bytes
from .format import PackedMasks, words_shape
from .layers import MASK_MODES, BackboneLayer, ImpressLayer, SupermaskLayer, TaskBatchNorm2d, task_modules
from .seeding import INITS, check_density, init_backbone

__all__ = ["CheckpointError", "FORMAT_VERSION", "load_checkpoint", "read_checkpoint", "save_checkpoint"]

# Version 2 adds the SHA-256 checksums of the header and of every tensor (docs/design.md §3.2);
# version 1 files, written before them, still load, checked in everything but the checksums.
FORMAT_VERSION = 2
LEGACY_VERSIONS = (1,)
READS = (*LEGACY_VERSIONS, FORMAT_VERSION)
META_KEY = "impresslearn"
WHAT = "checkpoint"
BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


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
                    include_weights: bool = False, include_scores: bool = False,
                    include_trained: bool = False) -> None:
    """Save `model`'s masks, bases, alphas and per-task BatchNorm statistics to `path` atomically.

    metadata: any JSON-serialisable dict kept with the file (experiment config, seeds, ...).
    include_trained: store, beside the seed, the weights of each SupSup layer under the union of
    its masks (weights trained there, as ExSSNeT does); a weight outside that union that differs
    from its seed is a ValueError (nothing is written): such a model needs include_weights.
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
            packed = m.export_masks()
            tensors[prefix + "masks"] = packed.words
            if include_trained and not rec.get("weights_included"):
                rec["trained"] = True
                tensors[prefix + "trained"] = _trained_values(name, m, packed.unpack().any(0))
            if include_scores:
                tensors[prefix + "scores"] = torch.stack([s.detach() for s in m.scores])
        if isinstance(m, ImpressLayer):
            tensors[prefix + "basis"] = m.basis_words
            tensors[prefix + "alpha"] = torch.stack([a.detach() for a in m.alpha])
        if isinstance(m, TaskBatchNorm2d):
            for key in BN_STATS:
                tensors[prefix + key] = torch.stack([getattr(bn, key) for bn in m.bns])
    for key, value in model.state_dict().items():
        if key not in owned:
            tensors["state." + key] = value
    header = {"format_version": FORMAT_VERSION, "layers": layers, "metadata": metadata or {}}
    atomic_write(path, safetensors_bytes(tensors, META_KEY, header))


def _trained_values(name: str, m: SupermaskLayer, union: torch.Tensor) -> torch.Tensor:
    """The weights under `union`, after checking that every other weight is still its seed's."""
    if m.init == "keep":
        raise ValueError(f"layer {name!r} keeps weights it was given: save it with include_weights")
    seed = init_backbone(m.weight.shape, init=m.init, seed=m.seed, density=m.scale_density).to(m.weight.device)
    w = m.weight.detach()
    if not torch.equal(torch.where(union, seed, w), seed):
        raise ValueError(f"layer {name!r} has weights outside the union of its masks that differ from the seed: "
                         "save it with include_weights")
    return w[union]


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """The header and the tensors of a checkpoint file, after checking its format version and
    (from version 2) the checksums of its header and of every tensor."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except IsADirectoryError as err:
        raise CheckpointError(f"{path} is a folder, not a checkpoint") from err
    return read_verified(data, path, WHAT, META_KEY, READS, legacy=LEGACY_VERSIONS)


@torch.no_grad()
def load_checkpoint(path: str | os.PathLike, model: nn.Module) -> dict:
    """Load a checkpoint into `model` (built with the same architecture and converted alike).

    Task counts and bases are resized to the file's; the backbone is rebuilt from the stored
    seeds unless the file holds the weights. Returns the metadata dict given at save time.

    All or nothing: the whole file is checked against the model first (checksums, entry names,
    shapes, dtypes, layer kinds and settings, mask densities); a `CheckpointError` then leaves
    the model as it was. Only a file that fits is copied in.
    """
    path = os.fspath(path)
    header, tensors = read_checkpoint(path)
    steps = _plan(path, header, tensors, model)
    for step in steps:
        step()
    return header.get("metadata", {})


# --------------------------------------------------------------------------- checking before loading

def _fail(path: str, sentence: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {path} does not fit the model: {sentence}")


def _field(path: str, layer: str, rec: dict, key: str, types: type | tuple[type, ...], check=None):
    """`rec[key]` of a layer's header record, of one of `types` (bools are never ints here)."""
    value = rec.get(key)
    ok = key in rec and isinstance(value, types) and not (isinstance(value, bool) and bool not in _as_tuple(types))
    if ok and check is not None:
        ok = check(value)
    if not ok:
        raise CheckpointError(f"checkpoint {path} has an invalid {key!r} ({value!r}) in the header of layer {layer!r}")
    return value


def _as_tuple(types) -> tuple:
    return types if isinstance(types, tuple) else (types,)


def _plan(path: str, header: dict, tensors: dict[str, torch.Tensor], model: nn.Module) -> list:
    """Check the whole file against `model` without changing it; the steps that then load it.

    The steps only assign attributes and copy prepared tensors (already on the right device and
    of the right dtype), so none of them can fail for a reason the checks did not see."""
    layers_rec = header.get("layers")
    if not isinstance(layers_rec, dict) or not all(isinstance(r, dict) for r in layers_rec.values()):
        raise CheckpointError(f"checkpoint {path} has no valid 'layers' in its header")
    if not isinstance(header.get("metadata", {}), dict):
        raise CheckpointError(f"checkpoint {path} has a 'metadata' in its header that is not a JSON object")
    modules = dict(task_modules(model))
    missing = set(layers_rec) - set(modules)
    extra = set(modules) - set(layers_rec)
    if missing or extra:
        raise _fail(path, f"the layers do not match: missing in the model {sorted(missing)}, "
                          f"not in the checkpoint {sorted(extra)}")
    expected: set[str] = set()
    steps: list = []
    owned: set[str] = set()
    for name, m in modules.items():
        prefix = f"{name}." if name else ""
        owned.update(prefix + k for k in m.state_dict())
        steps += _plan_layer(path, name, m, layers_rec[name], tensors, prefix, expected)
    state_keys = {k: v for k, v in model.state_dict().items() if k not in owned}
    expected.update("state." + k for k in state_keys)
    check_entries(tensors, expected, path, WHAT)
    state = {}
    for key, live in state_keys.items():
        saved = tensors["state." + key]
        check_tensor(saved, "state." + key, path, WHAT, dtype=live.dtype, shape=live.shape)
        state[key] = saved.to(live.device)
    if state:
        steps.append(lambda: model.load_state_dict(state, strict=False))
    return steps


def _plan_layer(path: str, name: str, m: nn.Module, rec: dict, tensors: dict, prefix: str, expected: set) -> list:
    kind = rec.get("kind")
    if type(m).__name__ != kind:
        raise _fail(path, f"layer {name!r} is a {type(m).__name__} in the model but a {kind} in the checkpoint")
    tasks = _field(path, name, rec, "num_tasks", int, lambda n: n >= 1)

    def entry(key: str, **checks) -> torch.Tensor:
        """The tensor `prefix + key`, checked (its name joins the expected ones)."""
        full = prefix + key
        expected.add(full)
        if full not in tensors:
            raise CheckpointError(f"checkpoint {path} lacks entry {full!r}")
        check_tensor(tensors[full], full, path, WHAT, **checks)
        return tensors[full]

    steps: list = []
    if isinstance(m, BackboneLayer):
        wshape = list(m.weight.shape)
        shape = _field(path, name, rec, "shape", list)
        if shape != wshape:
            raise _fail(path, f"layer {name!r} has a weight of shape {wshape} in the model but {shape} in the checkpoint")
        init = _field(path, name, rec, "init", str, lambda v: v in INITS or v == "keep")
        seed = _field(path, name, rec, "seed", int)
        scale = rec.get("scale_density")
        if scale is not None:
            _field(path, name, rec, "scale_density", (int, float), lambda v: _density_ok(v))
        has_bias = _field(path, name, rec, "bias", bool)
        if has_bias != (m.bias is not None):
            raise _fail(path, f"layer {name!r} {'has' if m.bias is not None else 'has no'} bias in the model, "
                              f"but {'has' if has_bias else 'has no'} bias in the checkpoint")
        if rec.get("weights_included"):
            weight = entry("weight", floating=True, shape=wshape).to(m.weight.device, m.weight.dtype)
            bias = (entry("bias", floating=True, shape=m.bias.shape).to(m.bias.device, m.bias.dtype)
                    if m.bias is not None else None)
        elif init == "keep":
            raise CheckpointError(f"checkpoint {path} has layer {name!r} with init 'keep' but without its weights")
        else:
            weight = init_backbone(wshape, init=init, seed=seed, density=scale).to(m.weight.device, m.weight.dtype)
            bias = torch.zeros_like(m.bias) if m.bias is not None else None
            if "trained" in rec and _field(path, name, rec, "trained", bool):
                if not isinstance(m, SupermaskLayer):
                    raise _fail(path, f"layer {name!r} has trained weights in the checkpoint but is no SupSup layer")
                words = entry("masks", dtype=torch.int32, shape=words_shape(m.weight.shape, tasks))
                union = PackedMasks(words, m.weight.shape).unpack().any(0)
                values = entry("trained", floating=True, shape=[int(union.sum())])
                weight[union.to(weight.device)] = values.to(weight.device, weight.dtype)

        def backbone(m=m, init=init, seed=seed, scale=scale, weight=weight, bias=bias):
            m.init, m.seed, m.scale_density = init, seed, scale
            m.weight.copy_(weight)
            if bias is not None:
                m.bias.copy_(bias)
        steps.append(backbone)
    device = next(iter(m.buffers())).device
    if isinstance(m, SupermaskLayer):
        steps.append(_plan_supermask(path, prefix, m, rec, tasks, entry, tensors, device))
    if isinstance(m, ImpressLayer):
        size = _field(path, name, rec, "basis_size", int, lambda n: n >= 1)
        per_channel = _field(path, name, rec, "per_channel", bool)
        words = entry("basis", dtype=torch.int32, shape=words_shape(m.weight.shape, size)).to(device)
        alpha_shape = [tasks, size] + ([m.weight.shape[0]] if per_channel else [])
        alpha = entry("alpha", floating=True, shape=alpha_shape).to(device, torch.float32)

        def impress(m=m, words=words, per_channel=per_channel, alpha=alpha):
            m.basis_words = words
            m.per_channel = per_channel
            m.alpha = nn.ParameterList()
            m._init_tasks()
            for a in alpha:
                m.add_task(init=a)
        steps.append(impress)
    if isinstance(m, TaskBatchNorm2d):
        stats = {}
        for key in BN_STATS:
            live = getattr(m.bns[0], key)
            stats[key] = entry(key, dtype=live.dtype, shape=[tasks, *live.shape]).to(device)

        def batchnorm(m=m, tasks=tasks, stats=stats):
            m.set_num_tasks(tasks)
            for t, bn in enumerate(m.bns):
                for key in BN_STATS:
                    getattr(bn, key).copy_(stats[key][t])
        steps.append(batchnorm)
    return steps


def _density_ok(v) -> bool:
    try:
        check_density(v)
    except ValueError:
        return False
    return True


def _plan_supermask(path, prefix, m, rec, tasks, entry, tensors, device):
    """The step setting a Supermask layer's scores: the saved ones if the file has them, else ones
    whose masks are the saved masks (as `SupermaskLayer.load_mask` makes them), after checking
    that every mask keeps the number of weights its density keeps."""
    name = prefix[:-1]
    mode = _field(path, name, rec, "mask", str, lambda v: v in MASK_MODES)
    density = float(_field(path, name, rec, "density", (int, float), lambda v: mode != "topk" or _density_ok(v)))
    shape = m.weight.shape
    words = entry("masks", dtype=torch.int32, shape=words_shape(shape, tasks)).to(device)
    saved = (entry("scores", floating=True, shape=[tasks, *shape]).to(device, m.weight.dtype)
             if prefix + "scores" in tensors else None)
    kept = ops.popup_k(shape.numel(), density) if mode == "topk" else None
    scores = []
    for t in range(tasks):
        mask = PackedMasks(words[t:t + 1], shape).unpack()[0]
        if kept is not None and int(mask.sum()) != kept:
            raise CheckpointError(f"checkpoint {path} has entry {prefix + 'masks'!r} whose mask {t} keeps "
                                  f"{int(mask.sum())} of {shape.numel()} weights, not the {kept} that density {density} keeps")
        if saved is None:
            # |1| beats |0| in a top-k, and 1 >= 0 > -1 under a threshold: the mask comes back exactly.
            mask = mask.to(m.weight.dtype)
            scores.append(mask * 2 - 1 if mode == "threshold" else mask)
    if saved is not None:
        scores = list(saved)

    def supermask():
        m.density, m.mask_mode = density, mode
        m.set_num_tasks(tasks)
        for s, new in zip(m.scores, scores):
            s.copy_(new)
    return supermask
