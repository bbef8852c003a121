"""The mask layers: a frozen seeded weight and, per task, a learned mask (SupSup) or alphas over a
packed basis (ImpressLearn), each for linear layers and 1-, 2- and 3-d (transposed) convolutions.

    SupermaskLinear / SupermaskConv2d   edge-popup / SupSup: per-task scores while a task trains,
    SupermaskConv (1d/3d, transposed)   its packed mask once finished; the forward uses
                                        weight * mask with a top-k mask at `density` ("topk") or
                                        SupSup's `scores >= 0` ("threshold")
    ImpressLinear / ImpressConv2d       ImpressLearn: a packed basis of T masks and per-task
    ImpressConv (1d/3d, transposed)     alpha [T] (or [T, rows] per output channel); the
                                        forward uses weight * Σ_t alpha_t M_t

Under a mixture `beta [num_tasks]` (task inference, docs/design.md §2.6) an Impress layer uses
`alpha = beta @ stack(alpha_per_task)` and a SupSup layer `W ⊙ Σ_t beta_t M_t` over its finished
masks: one combine either way. Under `TaskRows` each sample runs under its own task, and under
a `SampleMixture` the mixture's forward carries each sample's gradient with respect to beta
(layers/per_sample.py).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .. import ops
from ..choices import Choice
from ..format import PackedMasks, words_shape
from ..seeding import check_density, derive_seed
from .per_sample import grouped_rows, linear_rows, with_probe
from .quantise import AlphaQuant, codes, dequantise, quantise
from .tasks import TaskStateLayer


class _PerSample:
    """What the mask layers share under a task per sample and a per-sample mixture: their
    subclasses give `_weight()` (the current task's or mixture's effective weight),
    `_task_weight(s)` and `_tasks_packed()` (the packed words and alphas of every task)."""

    PER_SAMPLE = True

    def effective_weight(self) -> Tensor:
        if self._per_sample():
            raise RuntimeError(
                f"a {type(self).__name__} under a task per sample has no one effective weight; call the layer itself"
            )
        return self._weight()

    def _per_sample(self) -> bool:
        return self.rows is not None or self.probe is not None

    def _per_sample_forward(self, x: Tensor) -> Tensor:
        linear = _is_linear(self)
        if self.rows is not None:
            if linear and all(self.finished):  # a task still training has no packed form yet
                return linear_rows(x, self.rows, self.weight, *self._tasks_packed(), self.bias)
            return grouped_rows(x, self.rows, lambda s, xs: _apply(self, xs, self._task_weight(s), self.bias))
        y = _apply(self, x, self._weight(), self.bias)
        if linear:
            packed, alphas = self._tasks_packed()

            def outputs(x: Tensor, first: int, stop: int) -> Tensor:
                if alphas is None:  # one mask per task
                    return ops.every_task_linear(x, self.weight, packed[first:stop], None)
                return ops.every_task_linear(x, self.weight, packed, alphas[first:stop])

        else:

            def outputs(x: Tensor, first: int, stop: int) -> Tensor:
                return torch.stack([_apply(self, x, self._task_weight(s), None) for s in range(first, stop)])

        return with_probe(y, x, self.probe, outputs)


class MaskMode(Choice):
    """How scores become a mask: keep the top `density` (edge-popup), or `scores >= 0` (SupSup's
    threshold; docs/design.md §2.2–2.3)."""

    TOPK = "topk"
    THRESHOLD = "threshold"


MASK_MODES = MaskMode.names()


class SupermaskLayer(_PerSample, TaskStateLayer):
    """Per-task scores while a task trains; its mask (a top-k of |scores| or `scores >= 0`) as
    packed words once finished. Subclasses give `_apply_weight(x, weight)` (the layer's function)."""

    SLOT = "live_scores"
    TASK_BUFFERS = ("masks",)

    def _init_supermask(self, num_tasks: int, density: float, mask: str) -> None:
        if mask not in MASK_MODES:
            raise ValueError(f"mask must be one of {MASK_MODES}, got {mask!r}")
        if mask == "topk":
            check_density(density, self.weight.numel())
        self.density = float(density)
        self.mask_mode = mask
        self.score_init: float | None = None  # every new task's scores start here, if set (Piggyback)
        self.register_buffer(
            "masks", torch.zeros(words_shape(self.weight.shape, 0), dtype=torch.int32, device=self.weight.device)
        )
        self._init_task_state(num_tasks, self.weight.dtype)

    def score_seed(self, task: int) -> int:
        return derive_seed(self.seed, f"scores/{task}")

    def add_task(self, seed: int | None = None) -> int:
        """Append an untrained task; its scores start as SupSup's (kaiming_uniform, a=sqrt(5)) from
        `seed` or from the layer seed and the task index when it is first selected. Returns its index."""
        t = self._grow(self.num_tasks + 1)
        if seed is not None:
            self._stash[t] = self._fresh(t, seed)
        return t

    def _fresh(self, task: int, seed: int | None = None) -> Tensor:
        if self.score_init is not None and seed is None:
            return torch.full(self.weight.shape, float(self.score_init), dtype=self.weight.dtype, device=self.weight.device)
        gen = torch.Generator().manual_seed(self.score_seed(task) if seed is None else int(seed))
        fan_in = self.weight[0].numel()
        bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform with a = sqrt(5): gain*sqrt(3/fan) = 1/sqrt(fan)
        s = (torch.rand(self.weight.shape, generator=gen) * 2 - 1) * bound
        return s.to(self.weight.device, self.weight.dtype)

    def _pack_scores(self, s: Tensor) -> PackedMasks:
        if self.mask_mode == "topk":
            return ops.popup_pack(s.abs(), self.density)
        return ops.pack_masks((s >= 0).unsqueeze(0))

    def _finish(self, task: int, floats: Tensor) -> None:
        self.masks[task] = self._pack_scores(floats).words[0].to(self.masks.device)

    def _reopen(self, task: int) -> Tensor:
        # At the scale scores start at (the bound b of their initialisation): |b| beats |b/2| in a
        # top-k, and b >= 0 > -b under a threshold, so the mask comes back exactly; no score is 0,
        # where the top-k's straight-through gradient (times sign(s)) would vanish.
        b = 1.0 / math.sqrt(self.weight[0].numel())
        m = ops.unpack_masks(self.finished_masks([task]))[0].to(self.weight.dtype)
        return (m * 2 - 1) * b if self.mask_mode == "threshold" else (m + 1) * (b / 2)

    def finished_masks(self, tasks: Sequence[int] | None = None) -> PackedMasks:
        """The packed words of finished `tasks` (all by default), as they are held."""
        tasks = range(self.num_tasks) if tasks is None else [self._check_task(t) for t in tasks]
        open_tasks = [t for t in tasks if not self.finished[t]]
        if open_tasks:
            raise RuntimeError(f"tasks {open_tasks} are not finished")
        return PackedMasks(self.masks[list(tasks)], self.weight.shape)

    def mask(self, task: int | None = None) -> Tensor:
        """The float mask of a task (the current one by default); differentiable in its scores while
        the task trains, the unpacked finished mask otherwise."""
        t = self.task if task is None else self._check_task(task)
        if self.finished[t]:
            return ops.unpack_masks(self.finished_masks([t]))[0].to(self.weight.dtype)
        s = self.task_floats(t)
        if self.mask_mode == "topk":
            return ops.popup_mask(s.abs(), self.density)
        return ops.threshold_mask(s)

    def _weight(self) -> Tensor:
        """`weight * mask`, by the fused ops: from the packed words for a finished task
        (masked_weight) or a mixture of finished tasks (one combine), from the scores in one pass
        each way while a task trains."""
        if self.mixture is not None:
            self._unfinished_in_mixture()
            beta = self.mixture.to(self.weight.device, torch.float32)
            return ops.combine(self.weight, PackedMasks(self.masks, self.weight.shape), beta)
        return self._task_weight(self.task)

    def _task_weight(self, task: int) -> Tensor:
        if self.finished[task]:
            return ops.masked_weight(self.weight, PackedMasks(self.masks[task : task + 1], self.weight.shape))
        s = self.task_floats(task)
        if self.mask_mode == "topk":
            return ops.popup_weight(self.weight, s, self.density)
        return ops.threshold_weight(self.weight, s)

    def _tasks_packed(self) -> tuple[PackedMasks, None]:
        self._unfinished_in_mixture()
        return PackedMasks(self.masks, self.weight.shape), None

    def forward(self, x: Tensor) -> Tensor:
        if self._per_sample():
            return self._per_sample_forward(x)
        return self._apply_weight(x, self.effective_weight())

    @torch.no_grad()
    def export_masks(self, tasks: Sequence[int] | None = None) -> PackedMasks:
        """The masks of `tasks` (all by default) as one `PackedMasks`, 1 bit per weight: a finished
        task's words as held, an unfinished one's selected from its scores. They carry the
        backbone they were learnt over (`origin`), which `convert` checks when they are a basis."""
        tasks = range(self.num_tasks) if tasks is None else tasks
        parts = []
        for t in tasks:
            t = self._check_task(t)
            parts.append(self.finished_masks([t]) if self.finished[t] else self._pack_scores(self.task_floats(t).detach()))
        return PackedMasks(PackedMasks.cat(parts).words, self.weight.shape, self.backbone_origin())

    def backbone_origin(self) -> tuple | None:
        """`(init, seed, scale_density)` of this layer's backbone; None for kept weights (any)."""
        return None if self.init == "keep" else (self.init, self.seed, self.scale_density)

    @torch.no_grad()
    def load_masks(self, packed: PackedMasks) -> None:
        """Make the layer hold exactly the tasks of `packed`, each finished with its mask."""
        if packed.shape != self.weight.shape:
            raise ValueError(f"masks of shape {tuple(packed.shape)} do not fit weight {tuple(self.weight.shape)}")
        self.set_num_tasks(packed.num_masks)
        for t in range(packed.num_masks):
            self.load_mask(t, packed[t])

    @torch.no_grad()
    def load_mask(self, task: int, packed: PackedMasks) -> None:
        """Make an existing `task` finished with the one mask in `packed` (its floats dropped)."""
        if packed.shape != self.weight.shape or packed.num_masks != 1:
            raise ValueError(f"expected one mask of shape {tuple(self.weight.shape)}, got {packed!r}")
        task = self._check_task(task)
        words = packed.words.to(self.masks.device)
        if self.mask_mode == "topk":
            kept, want = int(ops.unpack_masks(packed).sum()), ops.popup_k(self.weight.numel(), self.density)
            if kept != want:
                raise ValueError(
                    f"mask {task} keeps {kept} of {self.weight.numel()} weights, not the {want} that density {self.density} keeps"
                )
        self.masks[task] = words[0]
        self._drop_floats(task)
        self.finished[task] = True


class SupermaskLinear(SupermaskLayer):
    """`nn.Linear` with a frozen random weight and a learned binary mask per task."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        *,
        num_tasks: int = 1,
        density: float = 0.1,
        mask: str = "topk",
        init: str = "kaiming_normal",
        scale: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._init_backbone((out_features, in_features), bias, init, seed, density if scale else None)
        self._init_supermask(num_tasks, density, mask)

    def _apply_weight(self, x: Tensor, weight: Tensor) -> Tensor:
        return F.linear(x, weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"{self.in_features}, {self.out_features}, bias={self.bias is not None}, tasks={self.num_tasks}, "
            f"mask={self.mask_mode}, density={self.density}, init={self.init}"
        )


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
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, groups={self.groups}"
        )


class SupermaskConv2d(_ConvArgs, SupermaskLayer):
    """`nn.Conv2d` with a frozen random weight and a learned binary mask per task."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = False,
        *,
        num_tasks: int = 1,
        density: float = 0.1,
        mask: str = "topk",
        init: str = "kaiming_normal",
        scale: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        shape = self._init_conv(in_channels, out_channels, kernel_size, stride, padding, dilation, groups)
        self._init_backbone(shape, bias, init, seed, density if scale else None)
        self._init_supermask(num_tasks, density, mask)

    def _apply_weight(self, x: Tensor, weight: Tensor) -> Tensor:
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return f"{self._conv_repr()}, tasks={self.num_tasks}, mask={self.mask_mode}, density={self.density}"


_CONV_FUNCTIONS = {
    (1, False): F.conv1d,
    (2, False): F.conv2d,
    (3, False): F.conv3d,
    (1, True): F.conv_transpose1d,
    (2, True): F.conv_transpose2d,
    (3, True): F.conv_transpose3d,
}


class _ConvNd:
    """The arguments of a 1-, 2- or 3-d convolution, plain or transposed (weight `[out, in/groups,
    *k]`, or `[in, out/groups, *k]` transposed: masks cover either shape alike, docs/design.md §3.1)."""

    def _init_convnd(
        self,
        dims: int,
        transposed: bool,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride,
        padding,
        dilation,
        groups: int,
        output_padding,
    ) -> tuple[int, ...]:
        if (dims, bool(transposed)) not in _CONV_FUNCTIONS:
            raise ValueError(f"convolutions have 1, 2 or 3 spatial dimensions, got {dims}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels {in_channels} and out_channels {out_channels} must be divisible by groups {groups}")
        tup = lambda v: (int(v),) * dims if isinstance(v, numbers.Integral) else tuple(int(i) for i in v)  # noqa: E731
        self.dims, self.transposed = int(dims), bool(transposed)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride, self.dilation = tup(kernel_size), tup(stride), tup(dilation)
        self.padding = padding if isinstance(padding, str) else tup(padding)
        self.output_padding = tup(output_padding)
        if self.transposed:
            return (in_channels, out_channels // groups, *self.kernel_size)
        return (out_channels, in_channels // groups, *self.kernel_size)

    def _conv(self, x: Tensor, weight: Tensor, bias: Tensor | None | str = "own") -> Tensor:
        fn = _CONV_FUNCTIONS[(self.dims, self.transposed)]
        bias = self.bias if isinstance(bias, str) else bias
        if self.transposed:
            return fn(x, weight, bias, self.stride, self.padding, self.output_padding, self.groups, self.dilation)
        return fn(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def _convnd_repr(self) -> str:
        kind = f"conv{'_transpose' if self.transposed else ''}{self.dims}d"
        return (
            f"{kind}, {self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, groups={self.groups}"
        )


class SupermaskConv(_ConvNd, SupermaskLayer):
    """A 1-d or 3-d convolution, or a transposed one, with a frozen random weight and a learned
    binary mask per task (`SupermaskConv2d` is the plain 2-d one)."""

    def __init__(
        self,
        dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = False,
        *,
        transposed: bool = False,
        output_padding=0,
        num_tasks: int = 1,
        density: float = 0.1,
        mask: str = "topk",
        init: str = "kaiming_normal",
        scale: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        shape = self._init_convnd(
            dims, transposed, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, output_padding
        )
        self._init_backbone(shape, bias, init, seed, density if scale else None, bias_size=out_channels)
        self._init_supermask(num_tasks, density, mask)

    def _apply_weight(self, x: Tensor, weight: Tensor) -> Tensor:
        return self._conv(x, weight)

    def extra_repr(self) -> str:
        return f"{self._convnd_repr()}, tasks={self.num_tasks}, mask={self.mask_mode}, density={self.density}"


# --------------------------------------------------------------------------- impress layers


class ImpressLayer(_PerSample, TaskStateLayer):
    """A packed basis of T masks and per-task alpha `[T]` or `[T, rows]`, initialised to 1/T; a
    finished task's alpha is a row of the buffer `alphas` (float32, its small float part)."""

    SLOT = "live_alpha"
    TASK_BUFFERS = ("alphas",)

    def _init_impress(self, basis: PackedMasks, num_tasks: int, per_channel: bool) -> None:
        if not isinstance(basis, PackedMasks):
            raise TypeError(f"basis must be a PackedMasks, got {type(basis).__name__}")
        if basis.shape != self.weight.shape:
            raise ValueError(f"basis of shape {tuple(basis.shape)} does not cover a weight of shape {tuple(self.weight.shape)}")
        if basis.num_masks < 1:
            raise ValueError("an ImpressLearn layer needs a basis of at least one mask, got none")
        self.register_buffer("basis_words", basis.words.to(self.weight.device))
        self.per_channel = bool(per_channel)
        self.register_buffer("alphas", torch.zeros((0, *self.alpha_shape()), device=self.weight.device))
        self.alpha_quant: AlphaQuant | None = None  # quantised alphas (layers/quantise.py): None = float32
        self._init_task_state(num_tasks, torch.float32)

    @property
    def basis(self) -> PackedMasks:
        return PackedMasks(self.basis_words, self.weight.shape)

    @property
    def basis_size(self) -> int:
        return self.basis_words.shape[0]

    @torch.no_grad()
    def reset_basis(self, basis: PackedMasks, per_channel: bool, num_tasks: int) -> None:
        """Hold `basis` and `num_tasks` untrained tasks instead (the checkpoint loader's)."""
        self.set_num_tasks(1)
        self._drop_floats(0)  # nothing of the old basis's shape is held from here on
        self.basis_words = basis.words.to(self.weight.device)
        self.per_channel = bool(per_channel)
        self.alphas = torch.zeros((1, *self.alpha_shape()), device=self.weight.device, dtype=self.alphas.dtype)
        self.finished[0] = False
        self.set_num_tasks(num_tasks)
        self._selected(self.task)

    def alpha_shape(self) -> tuple[int, ...]:
        return (self.basis_size, self.weight.shape[0]) if self.per_channel else (self.basis_size,)

    def add_task(self, init: Tensor | None = None) -> int:
        """Append a task whose alpha starts at 1/T everywhere (or at `init`). Returns its index."""
        shape = self.alpha_shape()
        if init is not None:
            a = torch.as_tensor(init, dtype=torch.float32).detach().clone()
            if tuple(a.shape) != shape:
                raise ValueError(f"alpha init must have shape {list(shape)}, got {tuple(a.shape)}")
        t = self._grow(self.num_tasks + 1)
        if init is not None:
            self._stash[t] = a.to(self.weight.device, self.alphas.dtype)
        return t

    def _fresh(self, task: int) -> Tensor:
        return torch.full(self.alpha_shape(), 1.0 / self.basis_size, device=self.weight.device, dtype=self.alphas.dtype)

    def _finish(self, task: int, floats: Tensor) -> None:
        # a quantised task keeps exactly the values its training saw: codes times scales
        kept = floats if self.alpha_quant is None else dequantise(*codes(floats, self.alpha_quant), self.alpha_quant)
        self.alphas[task] = kept.to(self.alphas)

    def _reopen(self, task: int) -> Tensor:
        return self.alphas[task].clone()

    def task_alpha(self, task: int) -> Tensor:
        """Task `task`'s alpha: the trainable Parameter (or stashed floats) while it is unfinished,
        its row of `alphas` once finished."""
        task = self._check_task(task)
        return self.alphas[task] if self.finished[task] else self.task_floats(task)

    @torch.no_grad()
    def load_alpha(self, task: int, alpha: Tensor) -> None:
        """Make an existing `task` finished with `alpha`."""
        task = self._check_task(task)
        alpha = torch.as_tensor(alpha, dtype=torch.float32)
        if tuple(alpha.shape) != self.alpha_shape():
            raise ValueError(f"alpha must have shape {list(self.alpha_shape())}, got {tuple(alpha.shape)}")
        self.alphas[task] = alpha.to(self.alphas.device)
        self._drop_floats(task)
        self.finished[task] = True

    def current_alpha(self) -> Tensor:
        if self.mixture is None:
            alpha = self.task_alpha(self.task)
            if self.alpha_quant is not None and not self.finished[self.task]:
                return quantise(alpha, self.alpha_quant)  # trained as it will be kept (QAT)
            return alpha
        stacked = torch.stack([self.task_alpha(t) for t in range(self.num_tasks)])  # [tasks, *alpha_shape]
        return torch.tensordot(self.mixture.to(stacked.dtype), stacked, dims=1)

    def _weight(self) -> Tensor:
        return ops.combine(self.weight, self.basis, self.current_alpha())

    def _task_weight(self, task: int) -> Tensor:
        return ops.combine(self.weight, self.basis, self.task_alpha(task))

    def _tasks_packed(self) -> tuple[PackedMasks, Tensor]:
        return self.basis, torch.stack([self.task_alpha(t) for t in range(self.num_tasks)])


class ImpressLinear(ImpressLayer):
    """`nn.Linear` whose weight is `W ⊙ Σ_t alpha[task, t] M_t` over a frozen packed basis."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        basis: PackedMasks,
        bias: bool = False,
        *,
        num_tasks: int = 1,
        per_channel: bool = False,
        init: str = "kaiming_normal",
        scale_density: float | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._init_backbone((out_features, in_features), bias, init, seed, scale_density)
        self._init_impress(basis, num_tasks, per_channel)

    def forward(self, x: Tensor) -> Tensor:
        if self._per_sample():
            return self._per_sample_forward(x)
        if torch.is_autocast_enabled(x.device.type):  # docs/design.md §4.3: combined in float32, then autocast
            return F.linear(x, self.effective_weight(), self.bias)
        return ops.impress_linear(x, self.weight, self.basis, self.current_alpha(), self.bias)

    def extra_repr(self) -> str:
        return (
            f"{self.in_features}, {self.out_features}, bias={self.bias is not None}, basis={self.basis_size}, "
            f"tasks={self.num_tasks}, per_channel={self.per_channel}"
        )


class ImpressConv2d(_ConvArgs, ImpressLayer):
    """`nn.Conv2d` whose weight is `W ⊙ Σ_t alpha[task, t] M_t` over a frozen packed basis."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        basis: PackedMasks,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = False,
        *,
        num_tasks: int = 1,
        per_channel: bool = False,
        init: str = "kaiming_normal",
        scale_density: float | None = None,
        seed: int = 0,
    ):
        super().__init__()
        shape = self._init_conv(in_channels, out_channels, kernel_size, stride, padding, dilation, groups)
        self._init_backbone(shape, bias, init, seed, scale_density)
        self._init_impress(basis, num_tasks, per_channel)

    def forward(self, x: Tensor) -> Tensor:
        if self._per_sample():
            return self._per_sample_forward(x)
        if torch.is_autocast_enabled(x.device.type):  # docs/design.md §4.3: combined in float32, then autocast
            return F.conv2d(x, self.effective_weight(), self.bias, self.stride, self.padding, self.dilation, self.groups)
        return ops.impress_conv2d(
            x, self.weight, self.basis, self.current_alpha(), self.bias, self.stride, self.padding, self.dilation, self.groups
        )

    def extra_repr(self) -> str:
        return f"{self._conv_repr()}, basis={self.basis_size}, tasks={self.num_tasks}, per_channel={self.per_channel}"


class ImpressConv(_ConvNd, ImpressLayer):
    """A 1-d or 3-d convolution, or a transposed one, whose weight is `W ⊙ Σ_t alpha[task, t] M_t`
    (one combine, then the convolution; `ImpressConv2d` is the plain 2-d one)."""

    def __init__(
        self,
        dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size,
        basis: PackedMasks,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = False,
        *,
        transposed: bool = False,
        output_padding=0,
        num_tasks: int = 1,
        per_channel: bool = False,
        init: str = "kaiming_normal",
        scale_density: float | None = None,
        seed: int = 0,
    ):
        super().__init__()
        shape = self._init_convnd(
            dims, transposed, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, output_padding
        )
        self._init_backbone(shape, bias, init, seed, scale_density, bias_size=out_channels)
        self._init_impress(basis, num_tasks, per_channel)

    def forward(self, x: Tensor) -> Tensor:
        if self._per_sample():
            return self._per_sample_forward(x)
        return self._conv(x, self.effective_weight())

    def extra_repr(self) -> str:
        return f"{self._convnd_repr()}, basis={self.basis_size}, tasks={self.num_tasks}, per_channel={self.per_channel}"


def _is_linear(layer: nn.Module) -> bool:
    return not isinstance(layer, (_ConvArgs, _ConvNd))


def _apply(layer: nn.Module, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """The layer's function (linear or its convolution) with the given weight and bias."""
    if isinstance(layer, _ConvArgs):
        return F.conv2d(x, weight, bias, layer.stride, layer.padding, layer.dilation, layer.groups)
    if isinstance(layer, _ConvNd):
        return layer._conv(x, weight, bias)
    return F.linear(x, weight, bias)


def supermask_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, layer) of every SupSup layer (SupermaskLinear, SupermaskConv2d, SupermaskConv) in `model`."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SupermaskLayer)]


def impress_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, layer) of every ImpressLearn layer (ImpressLinear, ImpressConv2d, ImpressConv) in `model`."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, ImpressLayer)]


def random_basis(shape: Sequence[int], num_masks: int, density: float, seed: int = 0) -> PackedMasks:
    """`num_masks` uniformly random masks keeping exactly the top-k count of `density` each."""
    if isinstance(num_masks, bool) or not isinstance(num_masks, numbers.Integral) or num_masks < 1:
        raise ValueError(f"a basis needs at least one mask, got num_masks={num_masks!r}")
    check_density(density, math.prod(shape))
    gen = torch.Generator().manual_seed(int(seed))
    return PackedMasks.cat([ops.popup_pack(torch.rand(tuple(shape), generator=gen), density) for _ in range(num_masks)])
