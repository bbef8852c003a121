"""`convert()`: any model made a mask model that keeps every task (docs/design.md §4.5).

Every module is classified before anything changes; after the swap each trainable parameter
belongs to exactly one task, so a finished task computes the same through any later training:

    nn.Linear (and subclasses that keep its forward), nn.Conv1d/2d/3d,
    nn.ConvTranspose1d/2d/3d                     mask layers (SupSup or ImpressLearn, or what
                                                 `convert_with`'s factory makes)
    nn.MultiheadAttention                        TaskMultiheadAttention: both projections masked
    nn.BatchNorm1d/2d/3d                         per-task statistics (TaskBatchNorm*), or frozen
                                                 as they are (batchnorm="keep": FrozenBatchNorm)
    LayerNorm, GroupNorm, RMSNorm, InstanceNorm, frozen (requires_grad off; with a seeded init
    Embedding, recurrent layers, parameters      their values drawn again from the layer's seed)
    a module of the model owns directly (tokens,
    position embeddings, layer scale)

A module used at several places is replaced at every one by one new module (sharing kept). What
cannot be classified — a torch module of another kind that owns parameters, a layer whose
forward is its own, a layer whose parent reads its `.weight` instead of calling it (the mask
would be bypassed), a padding mode other than zeros — is refused in one sentence naming its path
and type; `unknown="freeze"` freezes it instead.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Collection, Mapping

import torch
import torch.nn as nn

from ..format import PackedMasks
from ..seeding import INITS, check_density, check_seed, derive_seed, init_backbone
from .attention import TaskMultiheadAttention
from .masked import ImpressConv, ImpressConv2d, ImpressLinear, SupermaskConv, SupermaskConv2d, SupermaskLinear, random_basis
from .norms import FrozenBatchNorm, TaskBatchNorm1d, TaskBatchNorm2d, TaskBatchNorm3d
from .tasks import TaskAware, check_num_tasks, set_submodule

MODES = ("impress", "supermask")
BATCHNORM_MODES = ("per_task", "keep")
UNKNOWN_MODES = ("refuse", "freeze")

CONVS = {
    nn.Conv1d: (1, False),
    nn.Conv2d: (2, False),
    nn.Conv3d: (3, False),
    nn.ConvTranspose1d: (1, True),
    nn.ConvTranspose2d: (2, True),
    nn.ConvTranspose3d: (3, True),
}
BATCHNORMS = {nn.BatchNorm1d: TaskBatchNorm1d, nn.BatchNorm2d: TaskBatchNorm2d, nn.BatchNorm3d: TaskBatchNorm3d}
# Modules whose parameters are frozen as they stand: no running statistics, nothing a task learns.
FROZEN = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
    nn.Embedding,
    nn.EmbeddingBag,
    nn.RNNBase,
    nn.RNNCellBase,
    torch.nn.utils.parametrize.ParametrizationList,
)
# Already converted: left as they are, with everything inside them.
CONVERTED = (TaskAware, TaskMultiheadAttention, FrozenBatchNorm)

# A layer factory: (qualified name, the module to replace) -> its mask layer, or None if it cannot.
LayerFactory = Callable[[str, nn.Module], "nn.Module | None"]


class ConvertError(ValueError):
    """A model convert() cannot classify; nothing of it was changed."""


def convert(
    model: nn.Module,
    mode: str = "impress",
    *,
    basis: Mapping[str, PackedMasks] | None = None,
    basis_size: int | None = None,
    density: float = 0.1,
    mask: str = "topk",
    init: str = "kaiming_normal",
    scale: bool = False,
    seed: int = 0,
    per_channel: bool | Collection[str] = False,
    num_tasks: int = 1,
    batchnorm: str = "per_task",
    overrides: Mapping[str, str] | None = None,
    include: Callable[[str, nn.Module], bool] | None = None,
    unknown: str = "refuse",
) -> nn.Module:
    """Make `model` (in place) a mask model; returns `model`. The table in this module's docstring
    says what each kind of module becomes.

    mode: "supermask" (per-task learned masks) or "impress" (alphas over a basis).
    basis: for "impress", the basis of each layer by qualified name (an attention's projections are
        `<name>.in_proj` and `<name>.out_proj`); or `basis_size` random masks at `density` per layer.
    init: "kaiming_normal" / "signed_constant" rebuild each weight from `derive_seed(seed, name)`
        (biases zero) and draw every frozen parameter again from its own seed; "keep" keeps the
        model's weights and biases (frozen).
    scale: multiply the backbone's std by 1/sqrt(density).
    per_channel: alphas per output channel ([T, rows]) in every Impress layer (True), in none
        (False), or in the layers named (a collection of qualified names: alphas where they pay).
    batchnorm: "per_task" swaps BatchNorm for non-affine per-task statistics; "keep" freezes it.
    overrides: a mode per layer name (e.g. {"fc": "supermask"} for the hybrid variant).
    include: a predicate (name, module) choosing the layers to mask (the others are frozen).
    unknown: "refuse" (the default) or "freeze" what cannot be classified.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be 'impress' or 'supermask', got {mode!r}")
    if init != "keep" and init not in INITS:
        raise ValueError(f"init must be 'keep' or one of {INITS}, got {init!r}")
    check_density(density)
    overrides = dict(overrides or {})
    bad_modes = {n: v for n, v in overrides.items() if v not in MODES}
    if bad_modes:
        raise ValueError(f"overrides must give 'impress' or 'supermask', got {bad_modes}")
    if mode == "impress" and basis is None and basis_size is None and set(overrides.values()) != {"supermask"}:
        raise ValueError("mode 'impress' needs a basis per layer or a basis_size for random masks")
    if basis_size is not None and (isinstance(basis_size, bool) or not isinstance(basis_size, int) or basis_size < 1):
        raise ValueError(f"basis_size must be a whole number of at least 1 (a basis needs at least one mask), got {basis_size!r}")
    check_num_tasks(num_tasks)
    check_seed(seed)

    layer_init = "kaiming_normal" if init == "keep" else init

    channel_layers = None if isinstance(per_channel, bool) else set(per_channel)

    def make(name: str, old: nn.Module) -> nn.Module:
        pc = per_channel if channel_layers is None else name in channel_layers
        return _mask_layer(
            name, old, overrides.get(name, mode), basis, basis_size, density, mask, init, scale, seed, pc, num_tasks
        )

    return convert_with(
        model,
        make,
        num_tasks=num_tasks,
        batchnorm=batchnorm,
        include=include,
        unknown=unknown,
        reseed=None if init == "keep" else seed,
        init=layer_init,
        names=set(overrides) | (channel_layers or set()),
    )


def convert_with(
    model: nn.Module,
    make_layer: LayerFactory,
    *,
    num_tasks: int = 1,
    batchnorm: str = "per_task",
    include: Callable[[str, nn.Module], bool] | None = None,
    unknown: str = "refuse",
    reseed: int | None = None,
    init: str = "kaiming_normal",
    names: set[str] | None = None,
) -> nn.Module:
    """convert()'s walk with a layer factory of one's own (kernel-wise masks use it): every module
    classified first, then swapped. `reseed` draws the frozen parameters again from that seed
    (an unmasked linear or convolution as an `init` backbone);
    `names` are layer names that must be among those converted (else a ValueError)."""
    if batchnorm not in BATCHNORM_MODES:
        raise ValueError(f"batchnorm must be 'per_task' or 'keep', got {batchnorm!r}")
    if unknown not in UNKNOWN_MODES:
        raise ValueError(f"unknown must be 'refuse' or 'freeze', got {unknown!r}")
    if type(model) in CONVS or isinstance(model, (nn.Linear, nn.MultiheadAttention)):
        raise ValueError("convert swaps the layers inside a model; wrap a lone layer in nn.Sequential")
    plan = _plan(model, include, unknown)
    made = {name for name, _ in plan.layers}
    missing = set(names or ()) - made
    if missing:
        raise ValueError(f"overrides name layers that are not converted: {sorted(missing)}")
    new: dict[int, nn.Module] = {}
    for name, old in plan.layers:  # every new layer is made before the model changes
        layer = make_layer(name, old)
        if layer is None:
            raise ConvertError(
                f"{name} ({type(old).__name__}) cannot be made a mask layer by this method; "
                "leave it out with include= to freeze it"
            )
        new[id(old)] = layer = layer.to(device=old.weight.device)
        if id(old.weight) in plan.tied:  # a tied weight stays one tensor, frozen as it is (docs/design.md §4.5)
            layer.weight = old.weight.detach()
            layer.init = "keep"
    for mha, parts in plan.attention:
        new[id(mha)] = TaskMultiheadAttention(mha, **{part: new.pop(id(proj)) for part, proj in parts})
    for bn in plan.batchnorms:
        new[id(bn)] = _batchnorm(bn, batchnorm, num_tasks)
    for path, module, recurse in plan.frozen:
        _freeze(path, module, reseed, init, recurse)
    for old_id, paths in plan.paths.items():
        if old_id in new:
            for path in paths:
                set_submodule(model, path, new[old_id])
    return model


# --------------------------------------------------------------------------- classification


class _Plan:
    def __init__(self):
        self.layers: list[tuple[str, nn.Module]] = []  # (name, module to mask), attention projections too
        self.attention: list[tuple[nn.MultiheadAttention, list]] = []  # (attention, its projections)
        self.tied: set[int] = set()  # parameters more than one module owns
        self.batchnorms: list[nn.Module] = []
        self.frozen: list[tuple[str, nn.Module, bool]] = []  # (path, module, with its submodules' parameters)
        self.paths: dict[int, list[str]] = {}  # every path of every module replaced


def _plan(model: nn.Module, include, unknown: str) -> _Plan:
    plan = _Plan()
    owners: dict[int, set[int]] = {}
    for mod in model.modules():
        for p in mod._parameters.values():
            if p is not None:
                owners.setdefault(id(p), set()).add(id(mod))
    plan.tied = {i for i, o in owners.items() if len(o) > 1}
    seen: set[int] = set()
    skip: list[str] = []  # paths whose subtree is replaced or already converted
    refusals: list[str] = []
    for path, m in model.named_modules(remove_duplicate=False):
        if any(path.startswith(p + ".") for p in skip):
            continue
        plan.paths.setdefault(id(m), []).append(path)
        if id(m) in seen:
            if _replaces(m):
                skip.append(path)
            continue
        seen.add(id(m))
        why = _classify(plan, path, m, include, model)
        if why is not None:
            if unknown == "refuse":
                refusals.append(f"{path or 'the model'} ({type(m).__name__}): it {why}")
            else:
                plan.frozen.append((path, m, _replaces(m)))
        if _replaces(m) or isinstance(m, CONVERTED):
            skip.append(path)
    if refusals:
        raise ConvertError(
            f"convert cannot classify {refusals[0]}; pass unknown='freeze' to freeze it instead"
            + (f" ({len(refusals) - 1} more: {'; '.join(refusals[1:4])})" if len(refusals) > 1 else "")
        )
    replaced = {id(m) for _, m in plan.layers} | {id(m) for m, _ in plan.attention} | {id(m) for m in plan.batchnorms}
    plan.paths = {i: paths for i, paths in plan.paths.items() if i in replaced}
    return plan


def _replaces(m: nn.Module) -> bool:
    return _conv_kind(m) is not None or _is_linear(m) or _is_attention(m) or type(m) in BATCHNORMS


def _classify(plan: _Plan, path: str, m: nn.Module, include, model: nn.Module) -> str | None:
    """Add `m` to the plan; returns why it cannot be classified, or None."""
    if isinstance(m, CONVERTED):
        return None
    if _is_attention(m):
        if include is not None and not include(path, m):
            plan.frozen.append((path, m, True))
            return None
        parts = _projections(m)
        plan.attention.append((m, parts))
        plan.layers += [(f"{path}.{part}", proj) for part, proj in parts]
        return None
    if _is_linear(m) or _conv_kind(m) is not None:
        if _own_forward(m):
            return "has a forward of its own, which a mask layer would replace"
        if isinstance(getattr(m, "weight", None), nn.parameter.UninitializedParameter):
            return "is not initialised yet (run one batch through the model first)"
        if getattr(m, "padding_mode", "zeros") != "zeros":
            return f"pads with {m.padding_mode!r}; mask layers pad with zeros only"
        reader = _weight_reader(model, path)
        if reader is not None:
            return f"has its weight read directly by {reader}, which would bypass the mask"
        if include is not None and not include(path, m):
            plan.frozen.append((path, m, True))
        else:
            plan.layers.append((path, m))
        return None
    if type(m) in BATCHNORMS:
        plan.batchnorms.append(m)
        return None
    own = [p for p in m._parameters.values() if p is not None]
    if not own:
        return None
    if isinstance(m, FROZEN) or (isinstance(m, nn.modules.instancenorm._InstanceNorm) and not m.track_running_stats):
        plan.frozen.append((path, m, False))
        return None
    if type(m).__module__.startswith("torch."):
        return "owns parameters of a kind convert does not know"
    plan.frozen.append((path, m, False))  # a model's own tokens, embeddings, layer scales
    return None


def _is_linear(m: nn.Module) -> bool:
    return isinstance(m, nn.Linear)


def _conv_kind(m: nn.Module) -> tuple[int, bool] | None:
    for base, kind in CONVS.items():
        if isinstance(m, base):
            return kind
    return None


def _is_attention(m: nn.Module) -> bool:
    return isinstance(m, nn.MultiheadAttention) and type(m).forward is nn.MultiheadAttention.forward


def _own_forward(m: nn.Module) -> bool:
    base = nn.Linear if _is_linear(m) else next(b for b in CONVS if isinstance(m, b))
    return type(m).forward is not base.forward or getattr(type(m), "_conv_forward", None) is not getattr(
        base, "_conv_forward", None
    )


_READS_WEIGHT = re.compile(r"self\.(\w+)\.(?:weight|bias)\b")


def _weight_reader(model: nn.Module, path: str) -> str | None:
    """The parent of `path` if its forward reads the child's weight or bias instead of calling it
    (torchvision's Swin attention does), as `path (Type)`; else None."""
    parent_path, _, child = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    try:
        source = inspect.getsource(type(parent).forward)
    except (OSError, TypeError):
        return None
    if child in _READS_WEIGHT.findall(source):
        return f"{parent_path or 'the model'} ({type(parent).__name__})"
    return None


def _projections(mha: nn.MultiheadAttention) -> list[tuple[str, nn.Linear]]:
    """The projections of an attention as linear layers holding its weights (not copies)."""

    def linear(weight, bias):
        lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
        lin.weight = nn.Parameter(weight.detach(), requires_grad=False)
        if bias is not None:
            lin.bias = nn.Parameter(bias.detach(), requires_grad=False)
        return lin

    if mha.in_proj_weight is not None:
        parts = [("in_proj", linear(mha.in_proj_weight, mha.in_proj_bias))]
    else:
        parts = [
            ("q_proj", linear(mha.q_proj_weight, None)),
            ("k_proj", linear(mha.k_proj_weight, None)),
            ("v_proj", linear(mha.v_proj_weight, None)),
        ]
    return parts + [("out_proj", linear(mha.out_proj.weight, mha.out_proj.bias))]


# --------------------------------------------------------------------------- the swaps


def _mask_layer(name, old, mode, basis, basis_size, density, mask, init, scale, seed, per_channel, num_tasks):
    layer_seed = derive_seed(seed, name)
    layer_init = "kaiming_normal" if init == "keep" else init
    has_bias = old.bias is not None
    weight = old.weight
    if mode == "supermask":
        kw = dict(num_tasks=num_tasks, density=density, mask=mask, init=layer_init, scale=scale, seed=layer_seed)
    else:
        if basis is not None:
            if name not in basis:
                raise KeyError(f"no basis given for layer {name!r}")
            layer_basis = basis[name]
            made = (layer_init, layer_seed, density if scale else None)
            origin = getattr(layer_basis, "origin", None)
            if init != "keep" and origin is not None and tuple(origin) != made:
                raise ConvertError(
                    f"the basis of {name} was learnt over another backbone (init, layer seed, density "
                    f"scaling {tuple(origin)}) than this conversion makes ({made}); convert with the init, "
                    "seed and scale of the model the masks come from"
                )
        elif basis_size is not None:
            layer_basis = random_basis(weight.shape, basis_size, density, seed=derive_seed(layer_seed, "basis"))
        else:
            raise ValueError("mode 'impress' needs a basis per layer or a basis_size for random masks")
        kw = dict(
            num_tasks=num_tasks,
            per_channel=per_channel,
            init=layer_init,
            scale_density=density if scale else None,
            seed=layer_seed,
        )
    kind = _conv_kind(old)
    if kind is None:
        args = (old.in_features, old.out_features)
        new = (
            SupermaskLinear(*args, bias=has_bias, **kw)
            if mode == "supermask"
            else ImpressLinear(*args, layer_basis, bias=has_bias, **kw)
        )
    else:
        dims, transposed = kind
        args = (old.in_channels, old.out_channels, old.kernel_size)
        conv = dict(stride=old.stride, padding=old.padding, dilation=old.dilation, groups=old.groups, bias=has_bias)
        if kind == (2, False):
            new = SupermaskConv2d(*args, **conv, **kw) if mode == "supermask" else ImpressConv2d(*args, layer_basis, **conv, **kw)
        else:
            more = dict(transposed=transposed, output_padding=old.output_padding)
            new = (
                SupermaskConv(dims, *args, **conv, **more, **kw)
                if mode == "supermask"
                else ImpressConv(dims, *args, layer_basis, **conv, **more, **kw)
            )
    if init == "keep":
        with torch.no_grad():
            new.weight.copy_(weight.detach())
            if has_bias:
                new.bias.copy_(old.bias.detach())
        new.init = "keep"
    return new.to(dtype=weight.dtype)


def _batchnorm(bn: nn.Module, batchnorm: str, num_tasks: int) -> nn.Module:
    device = bn.running_mean.device if bn.running_mean is not None else None
    if batchnorm == "keep":
        return FrozenBatchNorm(bn)
    dtype = bn.running_mean.dtype if bn.running_mean is not None else None  # a float64 model keeps float64 statistics
    return BATCHNORMS[type(bn)](bn.num_features, num_tasks, bn.eps, bn.momentum or 0.1).to(device, dtype)


# The std a frozen parameter that a model owns directly (a token, a position embedding) is drawn
# with when it is drawn again from the seed: the usual start of such tensors (docs/design.md §4.5).
TOKEN_STD = 0.02


@torch.no_grad()
def _freeze(path: str, module: nn.Module, reseed: int | None, init: str, recurse: bool) -> None:
    """Turn off the gradient of the module's own parameters (and its submodules' with `recurse`):
    an optimizer then never moves them, as it skips a parameter without a gradient. With `reseed`
    they are drawn again from that seed first, so that the frozen backbone is a function of the
    seed as the mask layers' weights are (docs/design.md §4.5)."""
    if reseed is not None:
        _redraw(path, module, reseed, init, recurse)
    for p in module.parameters(recurse=recurse):
        p.requires_grad_(False)


def _redraw(path: str, module: nn.Module, seed: int, init: str, recurse: bool) -> None:
    """An unmasked linear or convolution: a backbone weight like a mask layer's (bias zero); a
    module with `reset_parameters`: its own initialisation under the path's seed; any other
    parameter: kept if constant (ones, zeros, a layer scale), else a normal of std TOKEN_STD."""
    own_seed = derive_seed(seed, path)
    params = dict(module.named_parameters(recurse=recurse))
    if (_is_linear(module) or _conv_kind(module) is not None) and "weight" in module._parameters:
        module.weight.copy_(init_backbone(module.weight.shape, init=init, seed=own_seed).to(module.weight))
        if module.bias is not None:
            module.bias.zero_()
        return
    if callable(getattr(module, "reset_parameters", None)) and not recurse:
        devices = [p.device.index or 0 for p in params.values() if p.device.type == "cuda"][:1]
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(own_seed)
            module.reset_parameters()
        return
    for name, p in params.items():
        if p.numel() > 1 and not bool((p == p.flatten()[0]).all()):
            gen = torch.Generator().manual_seed(derive_seed(own_seed, name))
            p.copy_((torch.randn(p.shape, generator=gen) * TOKEN_STD).to(p))
