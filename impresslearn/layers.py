"""Drop-in layers over the ops: frozen seeded weights, per-task masks or alphas, per-task BatchNorm.

    SupermaskLinear / SupermaskConv2d   edge-popup / SupSup: per-task trainable scores; the
                                        forward uses weight * mask(scores) with a top-k mask at
                                        `density` ("topk") or SupSup's `scores >= 0` ("threshold")
    ImpressLinear / ImpressConv2d       ImpressLearn: a packed basis of T masks and per-task
                                        alpha [T] (or [T, rows] per output channel); the
                                        forward uses weight * Σ_t alpha_t M_t
    TaskBatchNorm2d                     one non-affine BatchNorm2d per task (as SupSup keeps)
    TaskHeads                           one trainable classifier head per task (multi-head
                                        adaptation of a pretrained backbone, docs/design.md §2.10)

Every task-aware module has `.task` (the selected task), `.num_tasks`, `add_task()` and
`set_task(task)`; `set_task(model, task)` / `add_task(model)` apply to a whole model, and
`convert(model, ...)` swaps the nn.Linear / nn.Conv2d / nn.BatchNorm2d modules of any model.

For task inference an Impress layer also takes a *mixture*: `set_task(model, beta)` with a
tensor `beta [num_tasks]` makes each layer use `alpha = beta @ stack(alpha_per_task)`, which is
again one combine (docs/design.md §2.6); the BatchNorm layers then use batch statistics.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from . import ops
from .format import PackedMasks, pack_masks
from .seeding import INITS, check_density, derive_seed, init_backbone

MASK_MODES = ("topk", "threshold")


# --------------------------------------------------------------------------- task-aware bases

class TaskAware(nn.Module):
    """Shared task bookkeeping. Subclasses keep their per-task state and define `num_tasks`,
    `add_task()` and `_truncate_tasks(n)`; this class adds `task`, `mixture` and `set_task`."""

    def _init_tasks(self) -> None:
        self.task = 0
        self.mixture: Tensor | None = None

    def set_task(self, task) -> None:
        if isinstance(task, Tensor):
            if task.dim() != 1 or task.shape[0] != self.num_tasks:
                raise ValueError(f"a task mixture must have shape [{self.num_tasks}], got {tuple(task.shape)}")
            self.mixture = task
            return
        if isinstance(task, bool) or not isinstance(task, numbers.Integral):
            raise TypeError(f"task must be an int or a mixture tensor, got {type(task).__name__}")
        if not 0 <= task < self.num_tasks:
            raise IndexError(f"task {task} out of range for {self.num_tasks} tasks")
        self.task = int(task)
        self.mixture = None

    def set_num_tasks(self, n: int) -> None:
        """Grow (or shrink) the per-task state to `n` tasks (used when loading checkpoints)."""
        if n < 1:
            raise ValueError(f"a layer needs at least one task, got {n}")
        while self.num_tasks < n:
            self.add_task()
        self._truncate_tasks(n)
        self.set_task(min(self.task, n - 1))


class BackboneLayer(TaskAware):
    """A frozen weight (and optional frozen bias) rebuilt from (init, seed, density)."""

    def _init_backbone(self, shape, bias: bool, init: str, seed: int, scale_density: float | None) -> None:
        self.init = init
        self.seed = int(seed)
        self.scale_density = scale_density
        self.register_buffer("weight", init_backbone(shape, init=init, seed=seed, density=scale_density))
        self.register_buffer("bias", torch.zeros(shape[0]) if bias else None)

    def reset_backbone(self) -> None:
        """Rewrite the weight from its seed (biases back to zero); the checkpoint loader uses this."""
        if self.init == "keep":
            raise RuntimeError("this layer keeps weights it was given; they cannot be rebuilt from a seed")
        w = init_backbone(self.weight.shape, init=self.init, seed=self.seed, density=self.scale_density)
        self.weight.copy_(w)
        if self.bias is not None:
            self.bias.zero_()


# --------------------------------------------------------------------------- supermask layers

class SupermaskLayer(BackboneLayer):
    """Per-task trainable scores; the mask is a top-k of |scores| or `scores >= 0`."""

    def _init_supermask(self, num_tasks: int, density: float, mask: str) -> None:
        if mask not in MASK_MODES:
            raise ValueError(f"mask must be one of {MASK_MODES}, got {mask!r}")
        if mask == "topk":
            check_density(density)
        self.density = float(density)
        self.mask_mode = mask
        self.scores = nn.ParameterList()
        self._init_tasks()
        for _ in range(num_tasks):
            self.add_task()

    @property
    def num_tasks(self) -> int:
        return len(self.scores)

    def score_seed(self, task: int) -> int:
        return derive_seed(self.seed, f"scores/{task}")

    def add_task(self, seed: int | None = None) -> int:
        """Append scores for a new task, initialised as SupSup does (kaiming_uniform, a=sqrt(5)),
        from `seed` or from the layer seed and the task index. Returns the new task's index."""
        t = len(self.scores)
        gen = torch.Generator().manual_seed(self.score_seed(t) if seed is None else int(seed))
        fan_in = self.weight[0].numel()
        bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform with a = sqrt(5): gain*sqrt(3/fan) = 1/sqrt(fan)
        s = (torch.rand(self.weight.shape, generator=gen) * 2 - 1) * bound
        self.scores.append(nn.Parameter(s.to(self.weight.device, self.weight.dtype)))
        return t

    def _truncate_tasks(self, n: int) -> None:
        if len(self.scores) > n:  # nn.ParameterList has no __delitem__: keep the first n
            self.scores = nn.ParameterList(list(self.scores)[:n])

    def mask(self, task: int | None = None) -> Tensor:
        """The float mask of a task (the current one by default), differentiable in its scores."""
        s = self.scores[self.task if task is None else task]
        if self.mask_mode == "topk":
            return ops.popup_mask(s.abs(), self.density)
        return ops.threshold_mask(s)

    def effective_weight(self) -> Tensor:
        """`weight * mask()`, by the fused ops: one pass each way, no float mask in between."""
        if self.mixture is not None:
            raise RuntimeError("a task mixture needs Impress layers; build one from the exported masks")
        s = self.scores[self.task]
        if self.mask_mode == "topk":
            return ops.popup_weight(self.weight, s, self.density)
        return ops.threshold_weight(self.weight, s)

    @torch.no_grad()
    def export_masks(self, tasks: Sequence[int] | None = None) -> PackedMasks:
        """The learned masks of `tasks` (all by default) as one `PackedMasks`, 1 bit per weight."""
        tasks = range(self.num_tasks) if tasks is None else tasks
        parts = []
        for t in tasks:
            s = self.scores[t].detach()
            if self.mask_mode == "topk":
                parts.append(ops.popup_pack(s.abs(), self.density))
            else:
                parts.append(pack_masks((s >= 0).unsqueeze(0)))
        return PackedMasks.cat(parts)

    @torch.no_grad()
    def load_masks(self, packed: PackedMasks) -> None:
        """Set each task's scores so that its mask is `packed[t]` (1 task per mask)."""
        if packed.shape != self.weight.shape:
            raise ValueError(f"masks of shape {tuple(packed.shape)} do not fit weight {tuple(self.weight.shape)}")
        self.set_num_tasks(packed.num_masks)
        for t in range(packed.num_masks):
            self.load_mask(t, packed[t])

    @torch.no_grad()
    def load_mask(self, task: int, packed: PackedMasks) -> None:
        """Set the scores of one existing `task` so that its mask is the one mask in `packed`."""
        if packed.shape != self.weight.shape or packed.num_masks != 1:
            raise ValueError(f"expected one mask of shape {tuple(self.weight.shape)}, got {packed!r}")
        if not 0 <= task < self.num_tasks:
            raise IndexError(f"task {task} out of range for {self.num_tasks} tasks")
        m = packed.to(self.weight.device).unpack()[0]
        if self.mask_mode == "topk" and int(m.sum()) != ops.popup_k(m.numel(), self.density):
            raise ValueError(
                f"mask {task} keeps {int(m.sum())} of {m.numel()} weights, not the {ops.popup_k(m.numel(), self.density)} "
                f"that density {self.density} keeps"
            )
        # |1| beats |0| in a top-k, and 1 >= 0 > -1 under a threshold: the mask comes back exactly.
        m = m.to(self.weight.dtype)
        self.scores[task].copy_(m * 2 - 1 if self.mask_mode == "threshold" else m)


class SupermaskLinear(SupermaskLayer):
    """`nn.Linear` with a frozen random weight and a learned binary mask per task."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False, *, num_tasks: int = 1,
                 density: float = 0.1, mask: str = "topk", init: str = "kaiming_normal", scale: bool = False,
                 seed: int = 0):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._init_backbone((out_features, in_features), bias, init, seed, density if scale else None)
        self._init_supermask(num_tasks, density, mask)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.effective_weight(), self.bias)

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, bias={self.bias is not None}, tasks={self.num_tasks}, "
                f"mask={self.mask_mode}, density={self.density}, init={self.init}")


class _ConvArgs:
    def _init_conv(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups):
        pair = lambda v: (v, v) if isinstance(v, numbers.Integral) else tuple(v)  # noqa: E731
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels {in_channels} and out_channels {out_channels} must be divisible by groups {groups}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.dilation = pair(kernel_size), pair(stride), pair(dilation)
        self.padding = padding if isinstance(padding, str) else pair(padding)
        self.groups = groups
        return (out_channels, in_channels // groups, *self.kernel_size)

    def _conv_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, groups={self.groups}")


class SupermaskConv2d(_ConvArgs, SupermaskLayer):
    """`nn.Conv2d` with a frozen random weight and a learned binary mask per task."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = False, *, num_tasks: int = 1, density: float = 0.1,
                 mask: str = "topk", init: str = "kaiming_normal", scale: bool = False, seed: int = 0):
        super().__init__()
        shape = self._init_conv(in_channels, out_channels, kernel_size, stride, padding, dilation, groups)
        self._init_backbone(shape, bias, init, seed, density if scale else None)
        self._init_supermask(num_tasks, density, mask)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.effective_weight(), self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return f"{self._conv_repr()}, tasks={self.num_tasks}, mask={self.mask_mode}, density={self.density}"


# --------------------------------------------------------------------------- impress layers

class ImpressLayer(BackboneLayer):
    """A packed basis of T masks and per-task alpha `[T]` or `[T, rows]`, initialised to 1/T."""

    def _init_impress(self, basis: PackedMasks, num_tasks: int, per_channel: bool) -> None:
        if not isinstance(basis, PackedMasks):
            raise TypeError(f"basis must be a PackedMasks, got {type(basis).__name__}")
        if basis.shape != self.weight.shape:
            raise ValueError(f"basis of shape {tuple(basis.shape)} does not cover a weight of shape {tuple(self.weight.shape)}")
        self.register_buffer("basis_words", basis.words.to(self.weight.device))
        self.per_channel = bool(per_channel)
        self.alpha = nn.ParameterList()
        self._init_tasks()
        for _ in range(num_tasks):
            self.add_task()

    @property
    def basis(self) -> PackedMasks:
        return PackedMasks(self.basis_words, self.weight.shape)

    @property
    def basis_size(self) -> int:
        return self.basis_words.shape[0]

    @property
    def num_tasks(self) -> int:
        return len(self.alpha)

    def alpha_shape(self) -> tuple[int, ...]:
        return (self.basis_size, self.weight.shape[0]) if self.per_channel else (self.basis_size,)

    def add_task(self, init: Tensor | None = None) -> int:
        """Append alpha for a new task (1/T everywhere unless `init` is given). Returns its index."""
        shape = self.alpha_shape()
        if init is None:
            a = torch.full(shape, 1.0 / self.basis_size)
        else:
            a = torch.as_tensor(init, dtype=torch.float32).detach().clone()
            if tuple(a.shape) != shape:
                raise ValueError(f"alpha init must have shape {list(shape)}, got {tuple(a.shape)}")
        self.alpha.append(nn.Parameter(a.to(self.weight.device)))
        return len(self.alpha) - 1

    def _truncate_tasks(self, n: int) -> None:
        if len(self.alpha) > n:  # nn.ParameterList has no __delitem__: keep the first n
            self.alpha = nn.ParameterList(list(self.alpha)[:n])

    def current_alpha(self) -> Tensor:
        if self.mixture is None:
            return self.alpha[self.task]
        stacked = torch.stack(list(self.alpha))  # [tasks, *alpha_shape]
        return torch.tensordot(self.mixture.to(stacked.dtype), stacked, dims=1)

    def effective_weight(self) -> Tensor:
        return ops.combine(self.weight, self.basis, self.current_alpha())


class ImpressLinear(ImpressLayer):
    """`nn.Linear` whose weight is `W ⊙ Σ_t alpha[task, t] M_t` over a frozen packed basis."""

    def __init__(self, in_features: int, out_features: int, basis: PackedMasks, bias: bool = False, *,
                 num_tasks: int = 1, per_channel: bool = False, init: str = "kaiming_normal",
                 scale_density: float | None = None, seed: int = 0):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._init_backbone((out_features, in_features), bias, init, seed, scale_density)
        self._init_impress(basis, num_tasks, per_channel)

    def forward(self, x: Tensor) -> Tensor:
        return ops.impress_linear(x, self.weight, self.basis, self.current_alpha(), self.bias)

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, bias={self.bias is not None}, basis={self.basis_size}, "
                f"tasks={self.num_tasks}, per_channel={self.per_channel}")


class ImpressConv2d(_ConvArgs, ImpressLayer):
    """`nn.Conv2d` whose weight is `W ⊙ Σ_t alpha[task, t] M_t` over a frozen packed basis."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, basis: PackedMasks, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = False, *, num_tasks: int = 1, per_channel: bool = False,
                 init: str = "kaiming_normal", scale_density: float | None = None, seed: int = 0):
        super().__init__()
        shape = self._init_conv(in_channels, out_channels, kernel_size, stride, padding, dilation, groups)
        self._init_backbone(shape, bias, init, seed, scale_density)
        self._init_impress(basis, num_tasks, per_channel)

    def forward(self, x: Tensor) -> Tensor:
        return ops.impress_conv2d(x, self.weight, self.basis, self.current_alpha(), self.bias,
                                  self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return f"{self._conv_repr()}, basis={self.basis_size}, tasks={self.num_tasks}, per_channel={self.per_channel}"


# --------------------------------------------------------------------------- batch norm

class TaskBatchNorm2d(TaskAware):
    """One non-affine `BatchNorm2d` per task: each task keeps its own running statistics.

    Under a task mixture (task inference) the batch's own statistics are used.
    """

    def __init__(self, num_features: int, num_tasks: int = 1, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.bns = nn.ModuleList()
        self._init_tasks()
        for _ in range(num_tasks):
            self.add_task()

    @property
    def num_tasks(self) -> int:
        return len(self.bns)

    def add_task(self) -> int:
        device = self.bns[0].running_mean.device if len(self.bns) else None
        self.bns.append(nn.BatchNorm2d(self.num_features, self.eps, self.momentum, affine=False, device=device))
        return len(self.bns) - 1

    def _truncate_tasks(self, n: int) -> None:
        while len(self.bns) > n:
            del self.bns[len(self.bns) - 1]

    def forward(self, x: Tensor) -> Tensor:
        if self.mixture is not None:
            return F.batch_norm(x, None, None, training=True, eps=self.eps)
        return self.bns[self.task](x)

    def extra_repr(self) -> str:
        return f"{self.num_features}, tasks={self.num_tasks}"


class TaskHeads(TaskAware):
    """One `nn.Linear` head per task; task 0 is the head given (e.g. the pretrained one), and
    `add_task()` appends a fresh head of the same shape (PyTorch's default initialisation)."""

    def __init__(self, head: nn.Linear, num_tasks: int = 1):
        super().__init__()
        self.in_features, self.out_features, self.has_bias = head.in_features, head.out_features, head.bias is not None
        self.heads = nn.ModuleList([head])
        self._init_tasks()
        while self.num_tasks < num_tasks:
            self.add_task()

    @property
    def num_tasks(self) -> int:
        return len(self.heads)

    def add_task(self) -> int:
        w = self.heads[0].weight
        self.heads.append(nn.Linear(self.in_features, self.out_features, self.has_bias, device=w.device, dtype=w.dtype))
        return len(self.heads) - 1

    def _truncate_tasks(self, n: int) -> None:
        while len(self.heads) > n:
            del self.heads[len(self.heads) - 1]

    def forward(self, x: Tensor) -> Tensor:
        if self.mixture is not None:
            raise RuntimeError("task heads take one task at a time, not a mixture")
        return self.heads[self.task](x)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, tasks={self.num_tasks}"


# --------------------------------------------------------------------------- whole models

def task_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every task-aware module in `model`."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, TaskAware)]


def supermask_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, layer) of every SupSup layer (SupermaskLinear, SupermaskConv2d) in `model`."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SupermaskLayer)]


def impress_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, layer) of every ImpressLearn layer (ImpressLinear, ImpressConv2d) in `model`."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, ImpressLayer)]


def set_task(model: nn.Module, task) -> None:
    """Select `task` (an int) or a mixture (a tensor `[num_tasks]`) in every task-aware module."""
    found = task_modules(model)
    if not found:
        raise ValueError("the model has no task-aware modules; convert it first")
    for _, m in found:
        m.set_task(task)


def add_task(model: nn.Module) -> int:
    """Add a task to every task-aware module; returns the new task's index."""
    found = task_modules(model)
    if not found:
        raise ValueError("the model has no task-aware modules; convert it first")
    counts = {m.num_tasks for _, m in found}
    if len(counts) != 1:
        raise RuntimeError(f"task-aware modules disagree on the number of tasks: {sorted(counts)}")
    return [m.add_task() for _, m in found][0]


def random_basis(shape: Sequence[int], num_masks: int, density: float, seed: int = 0) -> PackedMasks:
    """`num_masks` uniformly random masks keeping exactly the top-k count of `density` each."""
    check_density(density)
    gen = torch.Generator().manual_seed(int(seed))
    return PackedMasks.cat([ops.popup_pack(torch.rand(tuple(shape), generator=gen), density) for _ in range(num_masks)])


def convert(model: nn.Module, mode: str = "impress", *, basis: Mapping[str, PackedMasks] | None = None,
            basis_size: int | None = None, density: float = 0.1, mask: str = "topk",
            init: str = "kaiming_normal", scale: bool = False, seed: int = 0, per_channel: bool = False,
            num_tasks: int = 1, batchnorm: str = "per_task", overrides: Mapping[str, str] | None = None,
            include: Callable[[str, nn.Module], bool] | None = None) -> nn.Module:
    """Swap the `nn.Linear` / `nn.Conv2d` modules of `model` (in place) for mask layers; returns `model`.

    mode: "supermask" (per-task learned masks) or "impress" (alphas over a basis).
    basis: for "impress", the basis of each layer by qualified name; or `basis_size` random
        masks at `density` per layer.
    init: "kaiming_normal" / "signed_constant" rebuild each weight from `derive_seed(seed, name)`
        (biases zero); "keep" keeps the model's weights and biases as they are (frozen).
    scale: multiply the backbone's std by 1/sqrt(density).
    batchnorm: "per_task" swaps nn.BatchNorm2d for non-affine `TaskBatchNorm2d`; "keep" leaves it.
    overrides: a mode per layer name (e.g. {"fc": "supermask"} for the hybrid variant).
    include: a predicate (name, module) choosing the layers to convert (all by default).
    """
    if mode not in ("impress", "supermask"):
        raise ValueError(f"mode must be 'impress' or 'supermask', got {mode!r}")
    if batchnorm not in ("per_task", "keep"):
        raise ValueError(f"batchnorm must be 'per_task' or 'keep', got {batchnorm!r}")
    if init != "keep" and init not in INITS:
        raise ValueError(f"init must be 'keep' or one of {INITS}, got {init!r}")
    check_density(density)
    overrides = dict(overrides or {})
    targets = [(n, m) for n, m in model.named_modules()
               if type(m) in (nn.Linear, nn.Conv2d) and (include is None or include(n, m))]
    unknown = set(overrides) - {n for n, _ in targets}
    if unknown:
        raise ValueError(f"overrides name layers that are not converted: {sorted(unknown)}")
    if any(n == "" for n, _ in targets):
        raise ValueError("convert swaps the layers inside a model; wrap a lone layer in nn.Sequential")
    for name, old in targets:
        layer_mode = overrides.get(name, mode)
        new = _convert_layer(name, old, layer_mode, basis, basis_size, density, mask, init, scale, seed,
                             per_channel, num_tasks)
        set_submodule(model, name, new.to(device=old.weight.device, dtype=old.weight.dtype))
    if batchnorm == "per_task":
        for name, old in [(n, m) for n, m in model.named_modules() if type(m) is nn.BatchNorm2d]:
            bn = TaskBatchNorm2d(old.num_features, num_tasks, old.eps, old.momentum or 0.1)
            set_submodule(model, name, bn.to(old.weight.device if old.weight is not None else "cpu"))
    return model


def _convert_layer(name, old, mode, basis, basis_size, density, mask, init, scale, seed, per_channel, num_tasks):
    is_conv = isinstance(old, nn.Conv2d)
    if is_conv and old.padding_mode != "zeros":
        raise ValueError(f"{name}: only zero padding is supported, got padding_mode={old.padding_mode!r}")
    layer_seed = derive_seed(seed, name)
    layer_init = "kaiming_normal" if init == "keep" else init
    has_bias = old.bias is not None
    if mode == "supermask":
        kw = dict(num_tasks=num_tasks, density=density, mask=mask, init=layer_init, scale=scale, seed=layer_seed)
    else:
        if basis is not None:
            if name not in basis:
                raise KeyError(f"no basis given for layer {name!r}")
            layer_basis = basis[name]
        elif basis_size is not None:
            layer_basis = random_basis(old.weight.shape, basis_size, density, seed=derive_seed(layer_seed, "basis"))
        else:
            raise ValueError("mode 'impress' needs a basis per layer or a basis_size for random masks")
        kw = dict(num_tasks=num_tasks, per_channel=per_channel, init=layer_init,
                  scale_density=density if scale else None, seed=layer_seed)
    if is_conv:
        args = (old.in_channels, old.out_channels, old.kernel_size)
        conv = dict(stride=old.stride, padding=old.padding, dilation=old.dilation, groups=old.groups, bias=has_bias)
        new = (SupermaskConv2d(*args, **conv, **kw) if mode == "supermask"
               else ImpressConv2d(*args, layer_basis, **conv, **kw))
    else:
        args = (old.in_features, old.out_features)
        new = (SupermaskLinear(*args, bias=has_bias, **kw) if mode == "supermask"
               else ImpressLinear(*args, layer_basis, bias=has_bias, **kw))
    if init == "keep":
        with torch.no_grad():
            new.weight.copy_(old.weight.detach())
            if has_bias:
                new.bias.copy_(old.bias.detach())
        new.init = "keep"
    return new


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
