"""Checkpoints of a converted model's masks, basis, alphas and per-task BatchNorm statistics.

Written with safetensors (no pickle on load) and a JSON header under the metadata key
"impresslearn" holding the format version and, per layer, its kind, weight shape, backbone
init and seed, density and task count. The frozen weights are rebuilt from their seeds on
load unless the file includes them (`include_weights=True`, needed for `init="keep"` layers).
Saves are atomic: the file is written beside the target and renamed over it. The header also
holds the SHA-256 of every tensor (format version 2; version 1 files have none and still load),
and loads are all or nothing: the whole file is checked against the model before any of it is
copied in (docs/design.md §3.2).

Every task's state is saved as the task-state model holds it (docs/design.md §4.4): the header
lists per layer which tasks are `finished`; a finished task is its packed mask (or alpha, soft
mask, head), and an unfinished task that holds floats (the one in training) has them saved too,
its index in the layer's `open` list, so that training can go on after loading. A file written
before tasks could be finished (no `finished` in its header) loads with every task finished, or,
where it holds scores, every task trainable from them.

Tensor names, for a layer with qualified name `L`:
    L.masks        SupSup layers: int32 packed masks [tasks, rows, nw] (an unfinished task's
                   selected from its scores)
    L.scores       the same layers' float scores of the `open` tasks [open, *shape]
    L.basis        Impress layers: int32 packed basis [T, rows, nw]
    L.alpha        the same layers' alphas [tasks, T] or [tasks, T, rows]; in a cold file a
                   quantised layer's are L.alpha.coded / .coded_lengths (each finished task's
                   codes, range-coded), L.alpha.scales (their float16 scales) and L.alpha.open
                   (the other tasks' floats, in task order)
    L.kmask_bits, L.kmask_real, L.logits   kernel-mask layers: the finished tasks' packed bits
                   and real parts ([tasks, ...]; a zero row for an unfinished task), the open
                   tasks' R [open, *mask_shape]
    L.head_weight, L.head_bias             TaskHeads: every task's head [tasks, out, in], [tasks, out]
    L.weight, L.bias                      frozen backbone (include_weights=True)
    L.trained      SupermaskLinear/Conv2d: the weights under the union of the stored masks, in flat
                   order (include_trained=True: ExSSNeT / SSNeT, whose weight phases change only
                   those; the rest is rebuilt from the seed)
    L.running_mean / running_var / num_batches_tracked   TaskBatchNorm1d/2d/3d, stacked over tasks
    state.K        every other entry K of the model's state_dict (frozen modules and parameters)
"""

from __future__ import annotations

import itertools
import math
import os
from typing import Any

import torch
import torch.nn as nn

from . import ops
from .coding import code_levels, code_words, decode_levels, decode_words, join_coded, split_coded
from .files import (
    CheckpointError,
    atomic_write,
    check_entries,
    check_tensor,
    read_safetensors_file,
    read_verified,
    safetensors_bytes,
)
from .format import PackedMasks, rows_cols, words_shape
from .kernel_masks import KernelMaskLayer
from .layers import (
    MASK_MODES,
    AlphaQuant,
    BackboneLayer,
    ImpressLayer,
    SupermaskLayer,
    TaskBatchNorm,
    TaskHeads,
    TaskStateLayer,
    codes,
    dequantise,
    impress_layers,
    task_modules,
)
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
# Every task-aware module a checkpoint holds whole; any other is refused, not dropped.
SAVED_KINDS = (SupermaskLayer, ImpressLayer, KernelMaskLayer, TaskBatchNorm, TaskHeads)


def _layer_record(layer: nn.Module) -> dict[str, Any]:
    rec: dict[str, Any] = {"kind": type(layer).__name__, "num_tasks": layer.num_tasks}
    if isinstance(layer, BackboneLayer):
        rec.update(
            shape=list(layer.weight.shape),
            init=layer.init,
            seed=layer.seed,
            scale_density=layer.scale_density,
            bias=layer.bias is not None,
        )
    if isinstance(layer, SupermaskLayer):
        rec.update(density=layer.density, mask=layer.mask_mode)
    if isinstance(layer, ImpressLayer):
        rec.update(basis_size=layer.basis_size, per_channel=layer.per_channel)
        if layer.alpha_quant is not None:  # quantised alphas: a loaded model trains and keeps them so
            q = layer.alpha_quant
            rec["alpha_quant"] = [q.bits, str(q.scale), str(q.step)]
    if isinstance(layer, KernelMaskLayer):
        rec.update(mask_shape=list(layer.mask_shape), real=layer.cfg.real)
    if isinstance(layer, (TaskStateLayer, TaskHeads)):
        rec["finished"] = [bool(layer.is_finished(t)) for t in range(layer.num_tasks)]
    if isinstance(layer, TaskStateLayer):
        rec["open"] = layer.open_tasks()
    return rec


def _all_paths(model: nn.Module) -> dict[int, list[str]]:
    """Every qualified name of every module (a module used at several places has several)."""
    out: dict[int, list[str]] = {}
    for name, m in model.named_modules(remove_duplicate=False):
        out.setdefault(id(m), []).append(name)
    return out


def _owned(model: nn.Module) -> set[str]:
    """The state_dict keys the task modules' own entries cover, under every name they have."""
    paths = _all_paths(model)
    owned: set[str] = set()
    for _, m in task_modules(model):
        for path in paths[id(m)]:
            prefix = f"{path}." if path else ""
            owned.update(prefix + k for k in m.state_dict())
    return owned


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    metadata: dict | None = None,
    include_weights: bool = False,
    include_scores: bool = False,
    include_trained: bool = False,
    cold: bool = False,
) -> None:
    """Save every task of `model` — finished ones as packed masks, alphas, soft masks and heads,
    the one in training with its floats — and per-task BatchNorm statistics, to `path` atomically.

    metadata: any JSON-serialisable dict kept with the file (experiment config, seeds, ...).
    include_scores: kept for older callers; the floats of every unfinished task are always saved.
    include_trained: store, beside the seed, the weights of each SupSup layer under the union of
    its masks (weights trained there, as ExSSNeT does); a weight outside that union that differs
    from its seed is a ValueError (nothing is written): such a model needs include_weights.
    cold: store every packed mask (tasks, basis, kernel masks) in its smallest exact form
    (`impresslearn.coding`: range-coded at its own density) instead of 1 bit per weight; the
    file loads back to the same tasks, bit for bit, at the cost of decoding (docs/design.md §3.2).
    """
    shapes: dict[str, tuple[int, int]] = {}  # a packed entry -> (rows, cols) of its masks
    del include_scores
    tensors: dict[str, torch.Tensor] = {}
    layers: dict[str, dict] = {}
    for name, m in task_modules(model):
        if not isinstance(m, SAVED_KINDS):
            raise ValueError(
                f"save_checkpoint cannot save {name or 'the model'} ({type(m).__name__}): it keeps per-task "
                f"state of a kind checkpoints do not hold (they hold {', '.join(k.__name__ for k in SAVED_KINDS)})"
            )
        layers[name] = rec = _layer_record(m)
        prefix = f"{name}." if name else ""
        if isinstance(m, BackboneLayer) and (include_weights or m.init == "keep"):
            rec["weights_included"] = True
            tensors[prefix + "weight"] = m.weight
            if m.bias is not None:
                tensors[prefix + "bias"] = m.bias
        if isinstance(m, (SupermaskLayer, KernelMaskLayer)) and rec["open"]:  # an Impress layer's are in L.alpha
            key = "scores" if isinstance(m, SupermaskLayer) else "logits"
            tensors[prefix + key] = torch.stack([m.task_floats(t).detach() for t in rec["open"]])
        if isinstance(m, SupermaskLayer):
            packed = m.export_masks()
            tensors[prefix + "masks"] = packed.words
            shapes[prefix + "masks"] = rows_cols(tuple(m.weight.shape))
            if include_trained and not rec.get("weights_included"):
                rec["trained"] = True
                tensors[prefix + "trained"] = _trained_values(name, m, ops.unpack_masks(packed).any(0))
        if isinstance(m, ImpressLayer):
            tensors[prefix + "basis"] = m.basis_words
            shapes[prefix + "basis"] = rows_cols(tuple(m.weight.shape))
            tensors[prefix + "alpha"] = torch.stack([m.task_alpha(t).detach() for t in range(m.num_tasks)])
        if isinstance(m, KernelMaskLayer):
            tensors[prefix + "kmask_bits"] = m.kmask_bits
            shapes[prefix + "kmask_bits"] = rows_cols(tuple(m.mask_shape))
            if m.cfg.real != "none":
                tensors[prefix + "kmask_real"] = m.kmask_real
        if isinstance(m, TaskHeads):
            tensors[prefix + "head_weight"] = torch.stack([h.weight.detach() for h in m.heads])
            if m.has_bias:
                tensors[prefix + "head_bias"] = torch.stack([h.bias.detach() for h in m.heads])
        if isinstance(m, TaskBatchNorm):
            for key in BN_STATS:
                tensors[prefix + key] = torch.stack([getattr(bn, key) for bn in m.bns])
    owned = _owned(model)
    for key, value in model.state_dict().items():
        if key not in owned:
            if "state." + key in tensors:
                raise ValueError(
                    f"save_checkpoint cannot name the model's entry {key!r}: 'state.{key}' is also a "
                    f"task layer's entry (a layer named 'state'); rename that module"
                )
            tensors["state." + key] = value
    seen: set[int] = set()
    for key, value in tensors.items():  # a tied weight is two entries: each saved on its own
        if value.numel() and value.data_ptr() in seen:
            tensors[key] = value.clone()
        seen.add(value.data_ptr())
    header = {"format_version": FORMAT_VERSION, "layers": layers, "metadata": metadata or {}}
    if cold:
        header["coded"] = {}
        for key, (rows, cols) in shapes.items():
            data, lengths = code_words(tensors.pop(key), cols)
            tensors[key + CODED], tensors[key + CODED_LENGTHS] = data, lengths
            header["coded"][key] = [rows, cols]
        header["coded_alphas"] = {}
        for name, m in impress_layers(model):
            if m.alpha_quant is not None:
                key = (f"{name}." if name else "") + "alpha"
                header["coded_alphas"][key] = _code_alphas(m, tensors, key)
    atomic_write(path, safetensors_bytes(tensors, META_KEY, header))


CODED, CODED_LENGTHS = ".coded", ".coded_lengths"  # a cold file's entries for a packed entry
SCALES, OPEN = ".scales", ".open"  # a cold file's quantised alphas: their scales, the other tasks' floats


def _code_alphas(m: ImpressLayer, tensors: dict[str, torch.Tensor], key: str) -> dict:
    """A quantised layer's finished alphas as range-coded codes and float16 scales (they are
    codes times scales exactly: layers/quantise.py), its other tasks' floats as they are."""
    q, alpha = m.alpha_quant, tensors.pop(key)
    finished = [bool(m.is_finished(t)) for t in range(m.num_tasks)]
    parts, scales = [], []
    for t in range(m.num_tasks):
        if finished[t]:
            c, scale = codes(alpha[t], q)
            parts.append(code_levels(c, q.levels))
            scales.append(scale.reshape(-1))
        else:
            parts.append(b"")
    tensors[key + CODED], tensors[key + CODED_LENGTHS] = join_coded(parts)
    tensors[key + SCALES] = torch.stack(scales) if scales else torch.zeros(0, dtype=torch.float16)
    tensors[key + OPEN] = alpha[[t for t in range(m.num_tasks) if not finished[t]]].contiguous()
    return {"shape": list(alpha.shape), "finished": finished, "bits": q.bits, "scale": str(q.scale)}


def _decode_alphas(key: str, rec: dict, tensors: dict[str, torch.Tensor], damaged) -> None:
    """A cold file's coded alphas back to the float entry `key` a checkpoint holds (in place)."""
    try:
        shape, finished, q = rec["shape"], rec["finished"], AlphaQuant(rec["bits"], rec["scale"])
        ok = isinstance(shape, list) and len(shape) in (2, 3) and all(type(v) is int and v >= 0 for v in shape)
        ok = ok and isinstance(finished, list) and len(finished) == shape[0] and all(type(v) is bool for v in finished)
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise damaged(f"its coded alphas {key!r} have no shape, finished list or quantisation")
    if any(key + part not in tensors for part in (CODED, CODED_LENGTHS, SCALES, OPEN)):
        raise damaged(f"its coded alphas {key!r} are missing their bytes, lengths, scales or floats")
    data, lengths, scales, open_rows = (tensors.pop(key + part) for part in (CODED, CODED_LENGTHS, SCALES, OPEN))
    count, done = math.prod(shape[1:]), sum(finished)
    if list(lengths.shape) != [shape[0]]:
        raise damaged(f"its coded alphas {key!r} have {lengths.numel()} lengths, not one per task")
    try:
        parts = split_coded(data, lengths)
    except ValueError as err:
        raise damaged(f"its coded alphas {key!r} do not decode ({err})") from None
    per_task = shape[2] if q.scale == "row" and len(shape) == 3 else 1
    if scales.dtype != torch.float16 or scales.numel() != done * per_task:
        raise damaged(f"its coded alphas {key!r} have {scales.numel()} scales, not {done * per_task}")
    if open_rows.dtype != torch.float32 or list(open_rows.shape) != [shape[0] - done, *shape[1:]]:
        raise damaged(f"its coded alphas {key!r} hold floats of shape {list(open_rows.shape)} for the other tasks")
    out, f, o = torch.zeros(shape, dtype=torch.float32), 0, 0
    scales = scales.reshape(done, per_task)
    for t, part in enumerate(parts):
        if finished[t]:
            try:
                c = decode_levels(part, count, q.levels).reshape(shape[1:])
            except ValueError as err:
                raise damaged(f"its coded alphas {key!r} do not decode ({err})") from None
            out[t] = dequantise(c, scales[f], q)
            f += 1
        else:
            out[t] = open_rows[o]
            o += 1
    tensors[key] = out


def _decode_cold(path: str, header: dict, tensors: dict[str, torch.Tensor]) -> None:
    """A cold file's coded masks back to the packed entries a checkpoint holds (in place)."""
    coded = header.get("coded", {})

    def damaged(sentence: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {path} is damaged: {sentence}")

    if not isinstance(coded, dict):
        raise damaged("its 'coded' record is not a table of entries")
    for key, shape in coded.items():
        if not (isinstance(shape, list) and len(shape) == 2 and all(type(v) is int and v >= 0 for v in shape)):
            raise damaged(f"its coded entry {key!r} has no [rows, cols]")
        if key + CODED not in tensors or key + CODED_LENGTHS not in tensors:
            raise damaged(f"its coded entry {key!r} is missing its bytes or lengths")
        try:
            tensors[key] = decode_words(tensors.pop(key + CODED), tensors.pop(key + CODED_LENGTHS), *shape)
        except ValueError as err:
            raise damaged(f"its coded entry {key!r} does not decode ({err})") from None
    alphas = header.get("coded_alphas", {})
    if not isinstance(alphas, dict):
        raise damaged("its 'coded_alphas' record is not a table of entries")
    for key, rec in alphas.items():
        if not isinstance(rec, dict):
            raise damaged(f"its coded alphas {key!r} have no record")
        _decode_alphas(key, rec, tensors, damaged)


def _trained_values(name: str, m: SupermaskLayer, union: torch.Tensor) -> torch.Tensor:
    """The weights under `union`, after checking that every other weight is still its seed's."""
    if m.init == "keep":
        raise ValueError(f"layer {name!r} keeps weights it was given: save it with include_weights")
    seed = init_backbone(m.weight.shape, init=m.init, seed=m.seed, density=m.scale_density).to(m.weight.device)
    w = m.weight.detach()
    if not torch.equal(torch.where(union, seed, w), seed):
        raise ValueError(
            f"layer {name!r} has weights outside the union of its masks that differ from the seed: save it with include_weights"
        )
    return w[union]


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """The header and the tensors of a checkpoint file, after checking its format version and
    (from version 2) the checksums of its header and of every tensor."""
    path = os.fspath(path)
    data = read_safetensors_file(path, WHAT)  # a regular file, read only as long as its header says
    header, tensors = read_verified(data, path, WHAT, META_KEY, READS, legacy=LEGACY_VERSIONS)
    if "coded" in header:  # a cold file: its masks are coded (save_checkpoint(cold=True))
        _decode_cold(path, header, tensors)
    return header, tensors


BACKBONE_MODES = ("check", "file")


@torch.no_grad()
def load_checkpoint(path: str | os.PathLike, model: nn.Module, *, backbone: str = "check") -> dict:
    """Load a checkpoint into `model` (built with the same architecture and converted alike).

    Task counts and bases are resized to the file's. The backbone is the model's identity: with
    `backbone="check"` (the default) a layer whose init, seed or density scaling differs from the
    file's is refused, naming both; `backbone="file"` takes the file's settings instead and
    rebuilds the weights from its seeds (or its stored weights). Returns the metadata dict given
    at save time.

    All or nothing: the whole file is checked against the model first (checksums, entry names,
    shapes, dtypes, layer kinds and settings, mask densities); a `CheckpointError` then leaves
    the model as it was. Only a file that fits is copied in.
    """
    if backbone not in BACKBONE_MODES:
        raise ValueError(f"backbone must be one of {BACKBONE_MODES}, got {backbone!r}")
    path = os.fspath(path)
    header, tensors = read_checkpoint(path)
    steps = _plan(path, header, tensors, model, backbone)
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


def _plan(path: str, header: dict, tensors: dict[str, torch.Tensor], model: nn.Module, backbone: str = "check") -> list:
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
        raise _fail(
            path, f"the layers do not match: missing in the model {sorted(missing)}, not in the checkpoint {sorted(extra)}"
        )
    expected: set[str] = set()
    steps: list = []
    owned = _owned(model)
    for name, m in modules.items():
        prefix = f"{name}." if name else ""
        steps += _plan_layer(path, name, m, layers_rec[name], tensors, prefix, expected, backbone)
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


def _plan_layer(
    path: str, name: str, m: nn.Module, rec: dict, tensors: dict, prefix: str, expected: set, backbone: str = "check"
) -> list:
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
            # a density that keeps no weight would rebuild the backbone scaled without bound
            _field(path, name, rec, "scale_density", (int, float), lambda v: _density_ok(v, m.weight.numel()))
        has_bias = _field(path, name, rec, "bias", bool)
        if has_bias != (m.bias is not None):
            raise _fail(
                path,
                f"layer {name!r} {'has' if m.bias is not None else 'has no'} bias in the model, "
                f"but {'has' if has_bias else 'has no'} bias in the checkpoint",
            )
        if backbone == "check" and _identity(init, seed, scale) != _identity(m.init, m.seed, m.scale_density):
            raise _fail(
                path,
                f"layer {name!r} has the backbone {_describe(m.init, m.seed, m.scale_density)} in the model "
                f"but {_describe(init, seed, scale)} in the checkpoint (convert the model with the "
                "checkpoint's settings, or load with backbone='file' to take them)",
            )
        if rec.get("weights_included"):
            weight = entry("weight", floating=True, shape=wshape).to(m.weight.device, m.weight.dtype)
            bias = (
                entry("bias", floating=True, shape=m.bias.shape).to(m.bias.device, m.bias.dtype) if m.bias is not None else None
            )
        elif init == "keep":
            raise CheckpointError(f"checkpoint {path} has layer {name!r} with init 'keep' but without its weights")
        else:
            weight = init_backbone(wshape, init=init, seed=seed, density=scale).to(m.weight.device, m.weight.dtype)
            bias = torch.zeros_like(m.bias) if m.bias is not None else None
            if "trained" in rec and _field(path, name, rec, "trained", bool):
                if not isinstance(m, SupermaskLayer):
                    raise _fail(path, f"layer {name!r} has trained weights in the checkpoint but is no SupSup layer")
                words = entry("masks", dtype=torch.int32, shape=words_shape(m.weight.shape, tasks))
                union = ops.unpack_masks(PackedMasks(words, m.weight.shape)).any(0)
                values = entry("trained", floating=True, shape=[int(union.sum())])
                weight[union.to(weight.device)] = values.to(weight.device, weight.dtype)

        def backbone(m=m, init=init, seed=seed, scale=scale, weight=weight, bias=bias):
            m.init, m.seed, m.scale_density = init, seed, scale
            m.weight.copy_(weight)
            if bias is not None:
                m.bias.copy_(bias)

        steps.append(backbone)
    device = next(itertools.chain(m.buffers(), m.parameters())).device  # TaskHeads hold parameters only
    finished, open_tasks = _task_lists(path, name, rec, tasks, m)
    if isinstance(m, SupermaskLayer):
        steps.append(_plan_supermask(path, prefix, m, rec, tasks, entry, tensors, device, finished, open_tasks))
    if isinstance(m, ImpressLayer):
        size = _field(path, name, rec, "basis_size", int, lambda n: n >= 1)
        per_channel = _field(path, name, rec, "per_channel", bool)
        words = entry("basis", dtype=torch.int32, shape=words_shape(m.weight.shape, size)).to(device)
        alpha_shape = [tasks, size] + ([m.weight.shape[0]] if per_channel else [])
        alpha = entry("alpha", floating=True, shape=alpha_shape).to(device, torch.float32)
        quant = rec.get("alpha_quant")
        if quant is not None:
            try:
                quant = AlphaQuant(*quant) if isinstance(quant, list) and len(quant) in (2, 3) else AlphaQuant(None)
            except ValueError as err:
                raise _fail(path, f"layer {name!r} has alpha_quant {rec['alpha_quant']!r}: {err}") from None
            if quant.scale == "row" and not per_channel:
                raise _fail(path, f"layer {name!r} has per-row alpha scales without per-channel alphas")

        def impress(m=m, words=words, per_channel=per_channel, alpha=alpha, quant=quant):
            m.reset_basis(PackedMasks(words, m.weight.shape), per_channel, tasks)
            m.alpha_quant = quant
            for t, a in enumerate(alpha):
                if finished[t]:
                    m.load_alpha(t, a)
                elif t in open_tasks:
                    m.load_floats(t, a)

        steps.append(impress)
    if isinstance(m, KernelMaskLayer):
        steps.append(_plan_kernel_mask(path, name, m, rec, tasks, entry, device, finished, open_tasks))
    if isinstance(m, TaskHeads):
        weight = entry("head_weight", floating=True, shape=[tasks, m.out_features, m.in_features])
        bias = entry("head_bias", floating=True, shape=[tasks, m.out_features]) if m.has_bias else None

        def heads(m=m, weight=weight, bias=bias):
            m.set_num_tasks(tasks)
            for t, head in enumerate(m.heads):
                head.weight.copy_(weight[t])
                if bias is not None:
                    head.bias.copy_(bias[t])
                if finished[t]:
                    m.finish_task(t)

        steps.append(heads)
    if isinstance(m, TaskBatchNorm):
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


def _task_lists(path: str, name: str, rec: dict, tasks: int, m: nn.Module) -> tuple[list[bool], list[int]]:
    """Which tasks the file holds finished, and which unfinished ones with floats. A file written
    before tasks could be finished has neither: every task finished, or every one trainable where
    the file holds its scores (docs/design.md §3.2)."""
    if "finished" not in rec:
        return [True] * tasks, []
    finished = _field(path, name, rec, "finished", list, lambda v: len(v) == tasks and all(isinstance(f, bool) for f in v))
    open_tasks = rec.get("open", [])
    if not (
        isinstance(open_tasks, list)
        and all(isinstance(t, int) and not isinstance(t, bool) for t in open_tasks)
        and open_tasks == sorted(set(open_tasks))
        and all(0 <= t < tasks and not finished[t] for t in open_tasks)
    ):
        raise CheckpointError(f"checkpoint {path} has an invalid 'open' ({open_tasks!r}) in the header of layer {name!r}")
    return finished, open_tasks


def _plan_kernel_mask(path, name, m, rec, tasks, entry, device, finished, open_tasks):
    shape = _field(path, name, rec, "mask_shape", list)
    real = _field(path, name, rec, "real", str)
    if shape != list(m.mask_shape) or real != m.cfg.real:
        raise _fail(
            path,
            f"layer {name!r} holds masks of shape {list(m.mask_shape)} with a {m.cfg.real!r} real part "
            f"in the model but of shape {shape} with a {real!r} one in the checkpoint",
        )
    bits = entry("kmask_bits", dtype=torch.int32, shape=words_shape(m.mask_shape, tasks)).to(device)
    real_parts = (
        entry("kmask_real", floating=True, shape=[tasks, *m.mask_shape]).to(device, m.weight.dtype) if real != "none" else None
    )
    logits = (
        entry("logits", floating=True, shape=[len(open_tasks), *m.mask_shape]).to(device, m.weight.dtype) if open_tasks else None
    )

    def kernel_mask():
        m.set_num_tasks(tasks)
        for t in range(tasks):
            if finished[t]:
                b = ops.unpack_masks(PackedMasks(bits[t : t + 1], m.mask_shape))[0]
                m.load_soft_mask(t, b, None if real_parts is None else real_parts[t])
            elif t in open_tasks:
                m.load_floats(t, logits[open_tasks.index(t)])
            else:
                m.untrain(t)

    return kernel_mask


def _identity(init: str, seed: int, scale) -> tuple:
    """What makes a layer's backbone: its init, and for a seeded one its seed and density scaling."""
    return ("keep",) if init == "keep" else (init, int(seed), None if scale is None else float(scale))


def _describe(init: str, seed: int, scale) -> str:
    if init == "keep":
        return "of kept weights"
    return f"{init} from seed {seed}" + ("" if scale is None else f" scaled for density {scale}")


def _density_ok(v, numel: int | None = None) -> bool:
    try:
        check_density(v, numel)
    except ValueError:
        return False
    return True


def _plan_supermask(path, prefix, m, rec, tasks, entry, tensors, device, finished, open_tasks):
    """The step setting a Supermask layer's tasks: finished ones to the saved masks, open ones to
    their saved scores, after checking that every mask keeps the number of weights its density
    keeps. A file without `finished` that holds scores for every task makes each trainable."""
    name = prefix[:-1]
    mode = _field(path, name, rec, "mask", str, lambda v: v in MASK_MODES)
    density = float(_field(path, name, rec, "density", (int, float), lambda v: mode != "topk" or _density_ok(v)))
    shape = m.weight.shape
    words = entry("masks", dtype=torch.int32, shape=words_shape(shape, tasks)).to(device)
    if "finished" not in rec and prefix + "scores" in tensors:  # an older file with every task's scores
        finished, open_tasks = [False] * tasks, list(range(tasks))
    scores = entry("scores", floating=True, shape=[len(open_tasks), *shape]).to(device, m.weight.dtype) if open_tasks else None
    kept = ops.popup_k(shape.numel(), density) if mode == "topk" else None
    for t in range(tasks):
        count = int(ops.unpack_masks(PackedMasks(words[t : t + 1], shape)).sum())
        if kept is not None and count != kept:
            raise CheckpointError(
                f"checkpoint {path} has entry {prefix + 'masks'!r} whose mask {t} keeps "
                f"{count} of {shape.numel()} weights, not the {kept} that density {density} keeps"
            )

    def supermask():
        m.density, m.mask_mode = density, mode
        m.set_num_tasks(tasks)
        for t in range(tasks):
            if finished[t]:
                m.load_mask(t, PackedMasks(words[t : t + 1], shape))
            elif t in open_tasks:
                m.load_floats(t, scores[open_tasks.index(t)])
            else:
                m.untrain(t)

    return supermask
