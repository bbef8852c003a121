"""The dense SupSup-style twin of the Impress layers, for memory and speed comparisons.

`densify(model)` swaps every ImpressLinear / ImpressConv2d of a converted model for a layer that
keeps its basis as stacked float masks `[T, *shape]` (32 bits per weight per mask in fp32, as
public SupSup code keeps masks) and computes `W ⊙ Σ_t alpha_t M_t` with
`impresslearn.dense.combine_dense`. Same weights, alphas and task selection; only the storage
and the arithmetic differ. Benchmarks only: a T = 150 ResNet-50 basis takes 15 GB this way.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .dense import combine_dense, stack_masks
from .layers import ImpressConv2d, ImpressLinear, ImpressLayer, TaskAware, set_submodule


class _DenseImpress(TaskAware):
    """Frozen weight and bias, stacked float masks, per-task alpha copied from an Impress layer."""

    def _copy_from(self, src: ImpressLayer, dtype: torch.dtype) -> None:
        self.register_buffer("weight", src.weight.detach().clone())
        self.register_buffer("bias", None if src.bias is None else src.bias.detach().clone())
        # Unpacked one layer at a time, so building it never holds more than this layer twice.
        self.register_buffer("stacked", stack_masks(src.basis, dtype).to(src.weight.device))
        self.alpha = nn.ParameterList([nn.Parameter(a.detach().clone()) for a in src.alpha])
        self.per_channel = src.per_channel
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

    def effective_weight(self) -> Tensor:
        if self.mixture is not None:
            raise RuntimeError("the dense baseline layers take one task at a time")
        return combine_dense(self.weight, self.stacked, self.alpha[self.task])


class DenseImpressLinear(_DenseImpress):
    def __init__(self, src: ImpressLinear, dtype: torch.dtype = torch.float32):
        super().__init__()
        self._copy_from(src, dtype)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.effective_weight(), self.bias)


class DenseImpressConv2d(_DenseImpress):
    def __init__(self, src: ImpressConv2d, dtype: torch.dtype = torch.float32):
        super().__init__()
        self._copy_from(src, dtype)
        self.stride, self.padding, self.dilation, self.groups = src.stride, src.padding, src.dilation, src.groups

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.effective_weight(), self.bias, self.stride, self.padding, self.dilation, self.groups)


def densify(model: nn.Module, dtype: torch.dtype = torch.float32) -> nn.Module:
    """Replace (in place) every Impress layer of `model` by its dense twin; returns `model`."""
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, (ImpressLinear, ImpressConv2d))]
    if not found:
        raise ValueError("the model has no Impress layers to densify")
    for name, layer in found:
        twin = DenseImpressConv2d(layer, dtype) if isinstance(layer, ImpressConv2d) else DenseImpressLinear(layer, dtype)
        set_submodule(model, name, twin)
    return model
