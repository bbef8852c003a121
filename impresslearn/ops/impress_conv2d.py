"""impress_conv2d: `F.conv2d(x, combine(weight, words, alpha), ...)`, an op over the combine
primitive (not a primitive itself: every backend's combine, then torch's convolution). Its
backward recomputes W_eff from the packed bits rather than keeping it (docs/design.md §4.2)."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..checks import check_combine, check_conv, check_packed
from ..format import PackedMasks
from .combine import _combine, grads_of_effective_weight
from .dispatch import primitive


def _pair(v, name: str) -> list[int]:
    if isinstance(v, numbers.Integral):
        return [int(v), int(v)]
    v = [int(i) for i in v]
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {v}")
    return v


def _explicit_padding(padding, weight: Tensor, dilation: list[int]) -> list[int]:
    """Turn nn.Conv2d's 'valid'/'same' into explicit symmetric padding (the op schema takes ints)."""
    if isinstance(padding, str):
        if padding == "valid":
            return [0, 0]
        if padding == "same":
            pads = []
            for d, k in zip(dilation, weight.shape[2:]):
                total = d * (int(k) - 1)
                if total % 2:
                    raise ValueError("padding='same' with an even effective kernel size is asymmetric; pad the input explicitly")
                pads.append(total // 2)
            return pads
        raise ValueError(f"padding must be 'valid', 'same', an int or a pair, got {padding!r}")
    return _pair(padding, "padding")


@torch.library.custom_op("impresslearn::impress_conv2d", mutates_args=())
def _impress_conv2d(
    x: Tensor,
    weight: Tensor,
    words: Tensor,
    alpha: Tensor,
    bias: Tensor | None,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> Tensor:
    check_combine(weight, words, alpha)
    check_conv(x, weight, bias, groups)
    w_eff = primitive(weight.device, "combine")(weight.contiguous(), words.contiguous(), alpha.contiguous())
    return F.conv2d(x, w_eff, bias, stride, padding, dilation, groups)


@_impress_conv2d.register_fake
def _(x, weight, words, alpha, bias, stride, padding, dilation, groups):
    check_combine(weight, words, alpha)
    check_conv(x, weight, bias, groups)
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)


def _impress_conv2d_setup(ctx, inputs, output):
    x, weight, words, alpha, bias, stride, padding, dilation, groups = inputs
    ctx.conv_args = (list(stride), list(padding), list(dilation), groups)
    ctx.has_bias = bias is not None
    # W_eff is recomputed in backward rather than kept: the packed bits are far smaller.
    ctx.save_for_backward(x, weight, words, alpha)


def _impress_conv2d_backward(ctx, grad):
    x, weight, words, alpha = ctx.saved_tensors
    stride, padding, dilation, groups = ctx.conv_args
    needs_x, needs_w, _, needs_a, needs_b = ctx.needs_input_grad[:5]
    w_eff = _combine(weight, words, alpha)
    batched = x.dim() == 4
    xb, gb = (x, grad) if batched else (x.unsqueeze(0), grad.unsqueeze(0))
    grad_x, g_eff, grad_bias = torch.ops.aten.convolution_backward(
        gb,
        xb,
        w_eff,
        [weight.shape[0]] if ctx.has_bias else None,
        stride,
        padding,
        dilation,
        False,
        [0, 0],
        groups,
        [needs_x, needs_w or needs_a, ctx.has_bias and needs_b],
    )
    if grad_x is not None and not batched:
        grad_x = grad_x.squeeze(0)
    grad_weight = grad_alpha = None
    if needs_w or needs_a:
        grad_weight, grad_alpha = grads_of_effective_weight(g_eff, weight, words, alpha, needs_w, needs_a)
    return grad_x, grad_weight, None, grad_alpha, grad_bias, None, None, None, None


_impress_conv2d.register_autograd(_impress_conv2d_backward, setup_context=_impress_conv2d_setup)


def impress_conv2d(
    x: Tensor,
    weight: Tensor,
    packed: PackedMasks,
    alpha: Tensor,
    bias: Tensor | None = None,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
) -> Tensor:
    """`F.conv2d(x, combine(weight, packed, alpha), bias, stride, padding, dilation, groups)`."""
    check_packed(weight, packed)
    dilation = _pair(dilation, "dilation")
    return _impress_conv2d(
        x,
        weight,
        packed.words,
        alpha,
        bias,
        _pair(stride, "stride"),
        _explicit_padding(padding, weight, dilation),
        dilation,
        int(groups),
    )
