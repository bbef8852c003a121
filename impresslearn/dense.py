"""Dense baselines: masks stored as stacked float tensors, the way public SupSup code keeps them.

Kept for comparisons in tests and benchmarks (memory and speed), never used by the layers.
"""

from __future__ import annotations

import torch

from .format import PackedMasks


def stack_masks(packed: PackedMasks, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The masks as a dense float tensor `[T, *shape]` (32 bits per weight per mask in fp32)."""
    return packed.unpack().to(dtype)


def _alpha_view(alpha: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    # [T] -> [T, 1, ..., 1]; [T, rows] -> [T, rows, 1, ..., 1]
    return alpha.reshape(*alpha.shape, *([1] * (weight.dim() + 1 - alpha.dim())))


def combine_dense(weight: torch.Tensor, stacked: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """SupSup-style: `(alpha[:, None] * stacked).sum(0) * weight` (materialises a `[T, *shape]` product)."""
    return (_alpha_view(alpha, weight) * stacked).sum(0) * weight


def combine_matvec(weight: torch.Tensor, stacked: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The best dense alternative: `alpha @ stacked` as one matrix-vector product, then `* weight`."""
    t = stacked.shape[0]
    if alpha.dim() == 1:
        coef = alpha @ stacked.reshape(t, -1)
    else:
        rows = weight.shape[0]
        coef = torch.einsum("tr,trc->rc", alpha, stacked.reshape(t, rows, -1))
    return coef.reshape(weight.shape) * weight
