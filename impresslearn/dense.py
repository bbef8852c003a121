"""Dense baselines: what the packed ops are compared with, in the tests and in every benchmark.

Masks stored as stacked float tensors `[T, *shape]` (32 bits per weight per mask in fp32), the
way public SupSup code keeps them, and the selections SupSup-style code computes its top-k
masks with. Never used by the layers.

    stack_masks(packed)                       the masks as a dense float stack
    combine_dense, combine_dense_grad_alpha   SupSup-style: broadcast, materialising [T, *shape]
    combine_matvec, combine_matvec_grad_alpha the best dense alternative: one matrix-vector product
    select_sort, select_topk, select_kthvalue top-k masks by sorting (SupSup's GetSubnet), by
                                              torch.topk, and by a torch.kthvalue threshold
    DenseImpressLinear, DenseImpressConv2d    the Impress layers with a dense basis
    densify(model)                            swap a converted model's Impress layers for them
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from . import ops
from .format import PackedMasks
from .layers import ImpressConv2d, ImpressLayer, ImpressLinear, TaskAware, set_submodule

# --------------------------------------------------------------------------- combine


def stack_masks(packed: PackedMasks, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The masks as a dense float tensor `[T, *shape]` (32 bits per weight per mask in fp32)."""
    return ops.unpack_masks(packed).to(dtype)


def _alpha_view(alpha: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    # [T] -> [T, 1, ..., 1]; [T, rows] -> [T, rows, 1, ..., 1]
    return alpha.reshape(*alpha.shape, *([1] * (weight.dim() + 1 - alpha.dim())))


def combine_dense(weight: torch.Tensor, stacked: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """SupSup-style: `(alpha[:, None] * stacked).sum(0) * weight` (materialises a `[T, *shape]` product)."""
    return (_alpha_view(alpha, weight) * stacked).sum(0) * weight


def combine_dense_grad_alpha(
    grad: torch.Tensor, weight: torch.Tensor, stacked: torch.Tensor, alpha: torch.Tensor
) -> torch.Tensor:
    """The alpha gradient autograd computes through `combine_dense`: the `[T, *shape]` product
    `stacked ⊙ (G ⊙ W)`, summed over each mask (each row for per-channel alpha)."""
    prod = stacked * (grad * weight)
    t = stacked.shape[0]
    out = prod.reshape(t, -1).sum(1) if alpha.dim() == 1 else prod.reshape(t, weight.shape[0], -1).sum(2)
    return out.to(alpha.dtype)


def combine_matvec(weight: torch.Tensor, stacked: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The best dense alternative: `alpha @ stacked` as one matrix-vector product, then `* weight`."""
    t = stacked.shape[0]
    if alpha.dim() == 1:
        coef = alpha @ stacked.reshape(t, -1)
    else:
        rows = weight.shape[0]
        coef = torch.einsum("tr,trc->rc", alpha, stacked.reshape(t, rows, -1))
    return coef.reshape(weight.shape) * weight


def combine_matvec_grad_alpha(
    grad: torch.Tensor, weight: torch.Tensor, stacked: torch.Tensor, alpha: torch.Tensor
) -> torch.Tensor:
    """The alpha gradient of `combine_matvec`: `stacked @ (G ⊙ W)`, one matrix-vector product
    (a batched one per row for per-channel alpha)."""
    t, rows = stacked.shape[0], weight.shape[0]
    gw = grad * weight
    if alpha.dim() == 1:
        out = stacked.reshape(t, -1) @ gw.reshape(-1)
    else:
        out = torch.einsum("trc,rc->tr", stacked.reshape(t, rows, -1), gw.reshape(rows, -1))
    return out.to(alpha.dtype)


# --------------------------------------------------------------------------- top-k selection


def select_sort(scores: torch.Tensor, k: int) -> torch.Tensor:
    """SupSup's GetSubnet: sort all scores, zero the smallest `numel - k`, one the rest."""
    out = torch.empty_like(scores)
    flat = out.view(-1)
    idx = scores.flatten().sort().indices
    cut = scores.numel() - k
    flat[idx[:cut]] = 0
    flat[idx[cut:]] = 1
    return out


def select_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    """`torch.topk(k)`, then a scatter of ones."""
    out = torch.zeros(scores.numel(), device=scores.device, dtype=scores.dtype)
    out[torch.topk(scores.flatten(), k, sorted=False).indices] = 1
    return out.view_as(scores)


def select_kthvalue(scores: torch.Tensor, k: int) -> torch.Tensor:
    """A `torch.kthvalue` threshold, then a comparison: keeps more than `k` when scores tie at it."""
    threshold = torch.kthvalue(scores.flatten(), scores.numel() - k + 1).values
    return (scores >= threshold).to(scores.dtype)


# --------------------------------------------------------------------------- layers

Combine = Callable[[Tensor, Tensor, Tensor], Tensor]


class _DenseImpress(TaskAware):
    """Frozen weight and bias, stacked float masks, per-task alpha copied from an Impress layer.

    The basis is unpacked one layer at a time, so building a model never holds more than that
    layer twice; a T = 150 ResNet-50 basis takes 15 GB this way. `combine` is `combine_dense`
    (SupSup's arithmetic) or `combine_matvec`.
    """

    def _copy_from(self, src: ImpressLayer, dtype: torch.dtype, combine: Combine) -> None:
        self.register_buffer("weight", src.weight.detach().clone())
        self.register_buffer("bias", None if src.bias is None else src.bias.detach().clone())
        self.register_buffer("stacked", stack_masks(src.basis, dtype).to(src.weight.device))
        self.alpha = nn.ParameterList([nn.Parameter(src.task_alpha(t).detach().clone()) for t in range(src.num_tasks)])
        self.per_channel = src.per_channel
        self.combine = combine
        self._init_tasks()
        self.task = src.task

    @property
    def num_tasks(self) -> int:
        return len(self.alpha)

    @property
    def basis_size(self) -> int:
        return self.stacked.shape[0]

    def add_task(self) -> int:
        shape = (self.basis_size, self.weight.shape[0]) if self.per_channel else (self.basis_size,)
        self.alpha.append(nn.Parameter(torch.full(shape, 1.0 / self.basis_size, device=self.weight.device)))
        return len(self.alpha) - 1

    def _truncate_tasks(self, n: int) -> None:
        if len(self.alpha) > n:
            self.alpha = nn.ParameterList(list(self.alpha)[:n])

    def trainable_parameters(self, task: int) -> list[nn.Parameter]:
        return [self.alpha[task]]

    def effective_weight(self) -> Tensor:
        if self.mixture is not None:
            raise RuntimeError("the dense baseline layers take one task at a time")
        return self.combine(self.weight, self.stacked, self.alpha[self.task])


class DenseImpressLinear(_DenseImpress):
    """An ImpressLinear whose basis is a stack of float masks."""

    def __init__(self, src: ImpressLinear, dtype: torch.dtype = torch.float32, combine: Combine = combine_dense):
        super().__init__()
        self._copy_from(src, dtype, combine)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.effective_weight(), self.bias)


class DenseImpressConv2d(_DenseImpress):
    """An ImpressConv2d whose basis is a stack of float masks."""

    def __init__(self, src: ImpressConv2d, dtype: torch.dtype = torch.float32, combine: Combine = combine_dense):
        super().__init__()
        self._copy_from(src, dtype, combine)
        self.stride, self.padding, self.dilation, self.groups = src.stride, src.padding, src.dilation, src.groups

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.effective_weight(), self.bias, self.stride, self.padding, self.dilation, self.groups)


def densify(model: nn.Module, dtype: torch.dtype = torch.float32, combine: Combine = combine_dense) -> nn.Module:
    """Replace (in place) every Impress layer of `model` by its dense twin; returns `model`.

    Same weights, alphas and task selection; only the storage and the arithmetic differ.
    """
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, (ImpressLinear, ImpressConv2d))]
    if not found:
        raise ValueError("the model has no Impress layers to densify")
    for name, layer in found:
        twin_of = DenseImpressConv2d if isinstance(layer, ImpressConv2d) else DenseImpressLinear
        set_submodule(model, name, twin_of(layer, dtype, combine))
    return model
