"""Kernel-wise soft masks over a pretrained, frozen backbone: KSM (Yang et al., CVPR 2021), layer 4.

    KernelMaskConv2d / KernelMaskLinear   a frozen weight W (kept from a pretrained model) and,
                                          per task, one mask value per (out, in) kernel of a
                                          convolution, broadcast over the kernel's spatial
                                          positions (a linear layer: one per weight, a 1x1
                                          kernel, or one per row; `linear=`)
    KernelMaskConfig                      the mask's form: binary part, real part, relaxation
    convert_kernelwise(model, cfg)        swaps the nn.Conv2d / nn.Linear modules of any model
    kernel_mask_layers(model)             (name, layer) of every kernel-mask layer

The mask of a task (docs/design.md §2.10) is `M = M_b + A_s`, a binary part plus a scaled real
part, both functions of one learnable real tensor `R` per task:

    p   = sigmoid(R)                                   the logistic step
    M_b = softmax([p, 1 - p] / T)[0] = sigmoid((2p - 1) / T)   while training (no straight-through
          estimator: the gradient is the relaxation's own); `1[R > 0]` once the task is stored
    A_s = scale * R  ("linear", the default),  scale * p  ("logistic")  or 0  ("none": the kernel-wise
          binary mask)

A trained task is *stored*: `store_task(t)` keeps the binary part as packed bits (1 bit per
kernel, docs/design.md §3.1) and the real part as float32 values, and drops `R`; a stored task
computes with `W ⊙ (bits + real)`, the soft mask alone, as the paper keeps it. The forms of `A_s`,
the temperature and `R`'s start are reconstructed from the paper's abstract and figure caption
(its equations could not be read); each is an option here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from . import ops
from .choices import Choice
from .format import PackedMasks, rows_cols, words_shape
from .layers import BackboneLayer, TaskStateLayer, convert_with


class RealForm(Choice):
    LOGISTIC = "logistic"  # scale * sigmoid(R)
    LINEAR = "linear"  # scale * R
    NONE = "none"  # 0: the kernel-wise binary mask


class Relaxation(Choice):
    SOFTMAX = "softmax"  # KSM's, at a temperature
    STE = "ste"  # a hard mask, a straight-through gradient (Piggyback's)


class LinearGrain(Choice):
    WEIGHT = "weight"  # a linear weight as 1x1 kernels: one value per weight
    ROW = "row"  # one value per row


REAL_FORMS = RealForm.names()
RELAXATIONS = Relaxation.names()
LINEAR_GRAINS = LinearGrain.names()


@dataclasses.dataclass
class KernelMaskConfig:
    """The form of a kernel-wise mask.

    real: the real part `A_s` ("linear": scale * R; "logistic": scale * sigmoid(R); "none": 0, the
        kernel-wise binary mask).
    scale: the real part's factor (`A_s`'s "proper scaling"; reconstructed).
    relax: "softmax" (KSM's relaxation, temperature `temperature`) or "ste" (a hard mask with a
        straight-through gradient, as Piggyback trains).
    temperature: the softmax's T (the algorithm may anneal it: `set_temperature`).
    init: the value `R` starts at (positive: every kernel kept, the pretrained network).
    linear: "weight" (a linear weight as 1x1 kernels: one value per weight) or "row" (one per row).
    """

    real: RealForm = RealForm.LINEAR
    scale: float = 1.0
    relax: Relaxation = Relaxation.SOFTMAX
    temperature: float = 0.1
    init: float = 1.0
    linear: LinearGrain = LinearGrain.WEIGHT

    def __post_init__(self):
        self.real = RealForm.of(self.real, "real")
        self.relax = Relaxation.of(self.relax, "relax")
        self.linear = LinearGrain.of(self.linear, "linear")
        for name in ("scale", "temperature", "init"):  # nan or inf would train to nothing, silently
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")


class _HardSTE(torch.autograd.Function):
    """`1[R > 0]` forward, the incoming gradient unchanged backward (Piggyback's estimator)."""

    @staticmethod
    def forward(ctx, r):
        return (r > 0).to(r.dtype)

    @staticmethod
    def backward(ctx, g):
        return g


class KernelMaskLayer(TaskStateLayer):
    """Per task: a trainable `R` while the task is learned (the slot `live_logits`), its soft mask
    (packed bits `kmask_bits[t]` + real part `kmask_real[t]`) once finished (docs/design.md §4.4).

    Subclasses give `mask_shape` (the grain of the mask) and `broadcast(mask)` (to the weight)."""

    SLOT = "live_logits"
    TASK_BUFFERS = ("kmask_bits", "kmask_real")
    mask_shape: tuple[int, ...]

    def _init_kernel_mask(self, cfg: KernelMaskConfig, num_tasks: int) -> None:
        self.cfg = cfg
        self.temperature = float(cfg.temperature)
        self.register_buffer(
            "kmask_bits", torch.zeros(words_shape(self.mask_shape, 0), dtype=torch.int32, device=self.weight.device)
        )
        real_shape = self.mask_shape if cfg.real != "none" else (0,)
        self.register_buffer("kmask_real", torch.zeros((0, *real_shape), dtype=self.weight.dtype, device=self.weight.device))
        self._init_task_state(num_tasks, self.weight.dtype)

    # ---- tasks

    @property
    def stored(self) -> list[bool]:
        """Which tasks are finished (stored), by index."""
        return self.finished

    def add_task(self) -> int:
        """Append a task whose `R` starts at `cfg.init` everywhere when first selected. Returns its index."""
        return self._grow(self.num_tasks + 1)

    def _fresh(self, task: int) -> Tensor:
        return torch.full(self.mask_shape, float(self.cfg.init), dtype=self.weight.dtype, device=self.weight.device)

    def _finish(self, task: int, r: Tensor) -> None:
        self.kmask_bits[task] = ops.pack_masks((r > 0).unsqueeze(0)).words[0].to(self.kmask_bits.device)
        if self.cfg.real != "none":
            self.kmask_real[task] = self.real_part(r)

    def _reopen(self, task: int) -> Tensor:
        bits, real = self.stored_parts(task)
        if real is None:  # only the sign of R is kept: R = ±|init| gives the same binary part
            return (ops.unpack_masks(bits)[0].to(self.weight.dtype) * 2 - 1) * abs(float(self.cfg.init) or 1.0)
        r = real / self.cfg.scale
        return torch.logit(r) if self.cfg.real == "logistic" else r

    def store_task(self, task: int) -> None:
        """Keep only the soft mask of `task` (bits + real part, as evaluated) and drop its `R`."""
        self.finish_task(task)

    def set_temperature(self, temperature: float) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)

    # ---- the mask

    def binary_part(self, r: Tensor, hard: bool) -> Tensor:
        if hard:
            return (r > 0).to(r.dtype)
        if self.cfg.relax == "ste":
            return _HardSTE.apply(r)
        p = torch.sigmoid(r)
        # softmax over the two logits [p, 1 - p] / T, written as the equal sigmoid of their difference
        return torch.sigmoid((2 * p - 1) / self.temperature)

    def real_part(self, r: Tensor) -> Tensor:
        if self.cfg.real == "logistic":
            return self.cfg.scale * torch.sigmoid(r)
        if self.cfg.real == "linear":
            return self.cfg.scale * r
        return torch.zeros_like(r)

    def stored_parts(self, task: int) -> tuple[PackedMasks, Tensor | None]:
        """A stored task's binary part (packed, 1 bit per kernel) and real part (None for "none")."""
        task = self._check_task(task)
        if not self.finished[task]:
            raise RuntimeError(f"task {task} is not stored yet; call store_task({task}) after training it")
        real = None if self.cfg.real == "none" else self.kmask_real[task]
        return PackedMasks(self.kmask_bits[task : task + 1], self.mask_shape), real

    def mask(self, task: int | None = None) -> Tensor:
        """The mask of a task at its own grain (`mask_shape`): the stored soft mask, or while the
        task is learned the relaxed one (training mode) or the hard one (eval mode)."""
        t = self.task if task is None else self._check_task(task)
        if self.finished[t]:
            words, real = self.kmask_bits[t : t + 1], self.stored_parts(t)[1]
            cols = rows_cols(self.mask_shape)[1]
            m = ops.unpack_bits(words, cols)[0].reshape(self.mask_shape).to(self.weight.dtype)
            return m if real is None else m + real
        r = self.task_floats(t)
        return self.binary_part(r, hard=not self.training) + self.real_part(r)

    def effective_weight(self) -> Tensor:
        """`W ⊙ broadcast(mask)`. A stored binary mask at the weight's own grain is read from its
        packed words by combine; at a kernel's or a row's grain it is unpacked at that grain
        (1/(kh·kw) of the weight, or one value per row), never to the weight's shape."""
        if self.mixture is not None:
            raise RuntimeError("kernel-mask layers take one task at a time, not a mixture")
        t = self.task
        if self.finished[t] and self.cfg.real == "none" and self.mask_shape == tuple(self.weight.shape):
            one = torch.ones(1, device=self.weight.device)
            return ops.combine(self.weight, PackedMasks(self.kmask_bits[t : t + 1], self.mask_shape), one)
        return self.weight * self.broadcast(self.mask())

    @torch.no_grad()
    def load_soft_mask(self, task: int, bits: Tensor, real: Tensor | None = None) -> None:
        """Store `task` from a binary part (bool or 0/1, `mask_shape`) and a real part."""
        task = self._check_task(task)
        if tuple(bits.shape) != self.mask_shape or (real is not None and tuple(real.shape) != self.mask_shape):
            raise ValueError(f"a soft mask of this layer has shape {list(self.mask_shape)}")
        if (real is None) != (self.cfg.real == "none"):
            raise ValueError(f"this layer's real part is {self.cfg.real!r}: give a real part exactly when it has one")
        self.kmask_bits[task] = ops.pack_masks(bits.bool().unsqueeze(0)).words[0].to(self.kmask_bits.device)
        if real is not None:
            self.kmask_real[task] = real.to(self.kmask_real)
        self._drop_floats(task)
        self.finished[task] = True

    def bytes_per_task(self) -> dict:
        """What one stored task costs here: packed bits (rows padded to 32 bits), the exact bit
        count rounded up to bytes, and the real part's float32 values."""
        n = 1
        for s in self.mask_shape:
            n *= s
        rows, cols = (self.mask_shape[0], n // self.mask_shape[0])
        packed = 4 * rows * -(-cols // 32)
        real = 0 if self.cfg.real == "none" else 4 * n
        return {"values": n, "bits_packed": packed, "bits_exact": -(-n // 8), "real": real, "total": packed + real}


class KernelMaskConv2d(KernelMaskLayer):
    """`nn.Conv2d` over a frozen weight `[out, in/groups, kh, kw]`, one mask value per `(out, in)` kernel."""

    def __init__(self, conv: nn.Conv2d, cfg: KernelMaskConfig, num_tasks: int = 1):
        super().__init__()
        if conv.padding_mode != "zeros":
            raise ValueError(f"only zero padding is supported, got padding_mode={conv.padding_mode!r}")
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        self.in_channels, self.out_channels, self.kernel_size = conv.in_channels, conv.out_channels, conv.kernel_size
        _keep_backbone(self, conv)
        self.mask_shape = tuple(self.weight.shape[:2])
        self._init_kernel_mask(cfg, num_tasks)

    def broadcast(self, mask: Tensor) -> Tensor:
        return mask[:, :, None, None]

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.effective_weight(), self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, tasks={self.num_tasks}, "
            f"real={self.cfg.real}, relax={self.cfg.relax}"
        )


class KernelMaskLinear(KernelMaskLayer):
    """`nn.Linear` over a frozen weight: one mask value per weight (a 1x1 kernel) or per row."""

    def __init__(self, linear: nn.Linear, cfg: KernelMaskConfig, num_tasks: int = 1):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        _keep_backbone(self, linear)
        self.mask_shape = tuple(self.weight.shape) if cfg.linear == "weight" else (self.weight.shape[0], 1)
        self._init_kernel_mask(cfg, num_tasks)

    def broadcast(self, mask: Tensor) -> Tensor:
        return mask  # [out, in], or [out, 1] per row

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.effective_weight(), self.bias)

    def extra_repr(self) -> str:
        return (
            f"{self.in_features}, {self.out_features}, tasks={self.num_tasks}, per={self.cfg.linear}, "
            f"real={self.cfg.real}, relax={self.cfg.relax}"
        )


def _keep_backbone(layer: BackboneLayer, old: nn.Module) -> None:
    """The pretrained weight and bias, copied and frozen (buffers: no optimizer ever sees them)."""
    layer.init, layer.seed, layer.scale_density = "keep", 0, None
    layer.register_buffer("weight", old.weight.detach().clone())
    layer.register_buffer("bias", None if old.bias is None else old.bias.detach().clone())


def kernel_mask_layers(model: nn.Module) -> list[tuple[str, KernelMaskLayer]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, KernelMaskLayer)]


def convert_kernelwise(
    model: nn.Module,
    cfg: KernelMaskConfig | None = None,
    *,
    num_tasks: int = 1,
    batchnorm: str = "per_task",
    include: Callable[[str, nn.Module], bool] | None = None,
    unknown: str = "refuse",
) -> nn.Module:
    """Swap the `nn.Conv2d` / `nn.Linear` modules of `model` (attention projections included) in
    place for kernel-mask layers that keep their pretrained weights frozen; returns `model`.
    `include` chooses the layers (e.g. all but a task head); everything else is treated as
    `convert()` treats it (per-task or frozen BatchNorm, frozen norms and tokens, refusals)."""
    cfg = cfg or KernelMaskConfig()

    def make(name: str, old: nn.Module) -> nn.Module | None:
        if type(old) is nn.Conv2d or (isinstance(old, nn.Conv2d) and not isinstance(old, nn.ConvTranspose2d)):
            return KernelMaskConv2d(old, cfg, num_tasks)
        if isinstance(old, nn.Linear):
            return KernelMaskLinear(old, cfg, num_tasks)
        return None  # 1-d, 3-d and transposed convolutions: no kernel grain is defined for them here

    return convert_with(model, make, num_tasks=num_tasks, batchnorm=batchnorm, include=include, unknown=unknown)
