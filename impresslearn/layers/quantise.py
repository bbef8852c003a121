"""Quantised alphas (docs/design.md §2.4, §2.8): a task's alphas as `bits`-bit integers times a
scale, one scale per layer or per output row.

    AlphaQuant(bits, scale)        the setting: 2..8 bits, scale "layer" or "row" (per-channel
                                   alphas: one scale per output row, over its K alphas)
    quantise(alpha, q)             the dequantised alpha, with a straight-through gradient, so that
                                   training sees the values a finished task keeps (QAT)
    codes(alpha, q)                (integer codes, fp16 scales): what a task stores
    quantised_bytes(shape, q)      those bytes, exactly: ceil(count * bits / 8) + 2 per scale

Symmetric and uniform: `scale = max|alpha| / (2**(bits-1) - 1)` over the group, rounded to
float16 (as it is stored), codes `round(alpha / scale)` in `[-(2**(bits-1) - 1), 2**(bits-1) - 1]`.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from ..choices import Choice


class ScaleGroup(Choice):
    LAYER = "layer"  # one scale for the layer's alphas
    ROW = "row"  # one scale per output row (per-channel alphas)


SCALE_BYTES = 2  # float16


@dataclasses.dataclass(frozen=True)
class AlphaQuant:
    bits: int = 8
    scale: ScaleGroup = ScaleGroup.LAYER

    def __post_init__(self):
        if type(self.bits) is not int or not 2 <= self.bits <= 8:
            raise ValueError(f"alpha bits must be a whole number from 2 to 8, got {self.bits!r}")
        object.__setattr__(self, "scale", ScaleGroup.of(self.scale, "alpha scale"))

    @property
    def levels(self) -> int:
        return 2 ** (self.bits - 1) - 1


def _scales(alpha: Tensor, q: AlphaQuant) -> Tensor:
    """float16-representable scales, broadcastable to `alpha` ([K] or [K, rows])."""
    if q.scale == ScaleGroup.ROW:
        if alpha.dim() != 2:
            raise ValueError("per-row alpha scales need per-channel alphas ([K, rows])")
        top = alpha.detach().abs().amax(0, keepdim=True)
    else:
        top = alpha.detach().abs().amax().reshape([1] * alpha.dim())
    scale = (top / q.levels).to(torch.float16).to(alpha.dtype)
    return torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero group: codes 0, any scale


def codes(alpha: Tensor, q: AlphaQuant) -> tuple[Tensor, Tensor]:
    """(int8 codes of `alpha`'s shape, the float16 scales)."""
    scale = _scales(alpha, q)
    c = torch.round(alpha.detach() / scale).clamp(-q.levels, q.levels).to(torch.int8)
    return c, scale.to(torch.float16)


def quantise(alpha: Tensor, q: AlphaQuant) -> Tensor:
    """`codes * scale` forward, the identity backward (straight-through rounding)."""
    c, scale = codes(alpha, q)
    value = c.to(alpha.dtype) * scale.to(alpha.dtype)
    return alpha + (value - alpha).detach()


def quantised_bytes(shape: tuple[int, ...], q: AlphaQuant) -> int:
    """Bytes of one task's quantised alphas of `shape` ([K] or [K, rows]): the codes, bit-packed,
    and the float16 scales."""
    scales = shape[1] if q.scale == ScaleGroup.ROW and len(shape) == 2 else 1
    return math.ceil(math.prod(shape) * q.bits / 8) + SCALE_BYTES * scales


__all__ = ["AlphaQuant", "ScaleGroup", "codes", "quantise", "quantised_bytes"]
