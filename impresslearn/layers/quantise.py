"""Quantised alphas (docs/design.md §2.4, §2.8): a task's alphas as `bits`-bit integers times a
scale, one scale per layer or per output row.

    AlphaQuant(bits, scale, step)  the setting: 2..8 bits, scale "layer" or "row" (per-channel
                                   alphas: one scale per output row, over its K alphas), step
                                   "max" (the group's largest alpha is the top code) or "mse"
                                   (the step, among fractions of that, that rounds the group
                                   with the least squared error: a few large alphas clipped)
    quantise(alpha, q)             the dequantised alpha, with a straight-through gradient, so that
                                   training sees the values a finished task keeps (QAT)
    codes(alpha, q)                (integer codes, fp16 scales): what a task stores
    dequantise(codes, scales, q)   codes times scales: exactly the alphas a finished task keeps
    quantised_bytes(shape, q)      those bytes, exactly: ceil(count * bits / 8) + 2 per scale
    coded_bytes(alpha, q)          its smallest exact form: the codes range-coded with an adaptive
                                   model (impresslearn.coding.code_levels) and the scales

Symmetric and uniform: `scale = max|alpha| / (2**(bits-1) - 1)` over the group (times the chosen
fraction for "mse"), rounded to float16 (as it is stored), codes `round(alpha / scale)` clamped to
`[-(2**(bits-1) - 1), 2**(bits-1) - 1]`. The "mse" step is chosen again at every step of training,
so quantisation-aware training sees the step its task will keep; at 3 bits it is worth 2 points on
PermutedMNIST (docs/results.md).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from ..choices import Choice
from ..coding import code_levels


class ScaleGroup(Choice):
    LAYER = "layer"  # one scale for the layer's alphas
    ROW = "row"  # one scale per output row (per-channel alphas)


class StepRule(Choice):
    MAX = "max"  # the largest alpha of a group is the top code
    MSE = "mse"  # the fraction of that step (STEP_FRACTIONS) with the least squared rounding error


STEP_FRACTIONS = (1.0, 0.85, 0.7, 0.6, 0.5, 0.4, 0.3)


SCALE_BYTES = 2  # float16


@dataclasses.dataclass(frozen=True)
class AlphaQuant:
    bits: int = 8
    scale: ScaleGroup = ScaleGroup.LAYER
    step: StepRule = StepRule.MAX

    def __post_init__(self):
        if type(self.bits) is not int or not 2 <= self.bits <= 8:
            raise ValueError(f"alpha bits must be a whole number from 2 to 8, got {self.bits!r}")
        object.__setattr__(self, "scale", ScaleGroup.of(self.scale, "alpha scale"))
        object.__setattr__(self, "step", StepRule.of(self.step, "alpha step"))

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
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero group: codes 0, any scale
    if q.step == StepRule.MAX:
        return scale
    a, best, chosen = alpha.detach(), None, scale
    for fraction in STEP_FRACTIONS:  # in order: a tie keeps the larger step
        s = (scale * fraction).to(torch.float16).to(alpha.dtype)
        s = torch.where(s > 0, s, scale)
        err = (torch.round(a / s).clamp(-q.levels, q.levels) * s - a).square()
        err = err.sum(0, keepdim=True) if q.scale == ScaleGroup.ROW else err.sum().reshape(scale.shape)
        if best is None:
            best, chosen = err, s
        else:
            better = err < best
            best, chosen = torch.where(better, err, best), torch.where(better, s, chosen)
    return chosen


def codes(alpha: Tensor, q: AlphaQuant) -> tuple[Tensor, Tensor]:
    """(int8 codes of `alpha`'s shape, the float16 scales)."""
    scale = _scales(alpha, q)
    c = torch.round(alpha.detach() / scale).clamp(-q.levels, q.levels).to(torch.int8)
    return c, scale.to(torch.float16)


def dequantise(c: Tensor, scales: Tensor, q: AlphaQuant) -> Tensor:
    """float32 alphas from int codes `[K]` or `[K, rows]` and their float16 scales (one, or one per
    row, in any shape that holds them): what a finished task keeps, bit for bit."""
    shape = [1, c.shape[1]] if q.scale == ScaleGroup.ROW else [1] * c.dim()
    return c.to(torch.float32) * scales.to(torch.float32).reshape(shape)


def quantise(alpha: Tensor, q: AlphaQuant) -> Tensor:
    """`codes * scale` forward, the identity backward (straight-through rounding)."""
    value = dequantise(*codes(alpha, q), q).to(alpha.dtype)
    if not alpha.requires_grad:  # (the value exactly, not alpha + (value - alpha) rounded)
        return value
    return alpha + (value - alpha).detach()


def quantised_bytes(shape: tuple[int, ...], q: AlphaQuant) -> int:
    """Bytes of one task's quantised alphas of `shape` ([K] or [K, rows]): the codes, bit-packed,
    and the float16 scales."""
    scales = shape[1] if q.scale == ScaleGroup.ROW and len(shape) == 2 else 1
    return math.ceil(math.prod(shape) * q.bits / 8) + SCALE_BYTES * scales


def coded_bytes(alpha: Tensor, q: AlphaQuant) -> int:
    """Bytes of one task's quantised alphas in their smallest exact form: the codes range-coded
    (`code_levels`: about their entropy) and the float16 scales."""
    c, scale = codes(alpha, q)
    return len(code_levels(c, q.levels)) + SCALE_BYTES * scale.numel()


__all__ = ["AlphaQuant", "ScaleGroup", "StepRule", "coded_bytes", "codes", "dequantise", "quantise", "quantised_bytes"]
