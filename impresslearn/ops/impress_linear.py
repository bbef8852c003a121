"""impress_linear and its input gradient: `F.linear(x, combine(weight, words, alpha), bias)`.

The input gradient is its own primitive so that a backend can walk the packed words transposed
(`grad @ W_eff`) instead of forming W_eff; it is differentiable for double backward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..checks import check_packed, impress_linear_args
from ..format import PackedMasks
from .combine import _combine, grads_of_effective_weight
from .dispatch import has_kernel, primitive_op


@primitive_op()
def _impress_linear(x: Tensor, weight: Tensor, words: Tensor, alpha: Tensor, bias: Tensor | None) -> Tensor: ...


@primitive_op()
def _impress_linear_grad_input(grad: Tensor, weight: Tensor, words: Tensor, alpha: Tensor) -> Tensor: ...


def _impress_linear_setup(ctx, inputs, output):
    x, weight, words, alpha, bias = inputs
    ctx.has_bias = bias is not None
    ctx.save_for_backward(x, weight, words, alpha)


def _impress_linear_backward(ctx, grad):
    x, weight, words, alpha = ctx.saved_tensors
    needs_x, needs_w, _, needs_a, needs_b = ctx.needs_input_grad
    rows, cols = weight.shape
    grad_x = grad_weight = grad_alpha = grad_bias = None
    if needs_x:
        grad_x = _impress_linear_grad_input(grad, weight, words, alpha)
    if needs_w or needs_a:
        g_eff = grad.reshape(-1, rows).t() @ x.reshape(-1, cols)
        grad_weight, grad_alpha = grads_of_effective_weight(g_eff, weight, words, alpha, needs_w, needs_a)
    if ctx.has_bias and needs_b:
        grad_bias = grad.reshape(-1, rows).sum(0)
    return grad_x, grad_weight, None, grad_alpha, grad_bias


_impress_linear.register_autograd(_impress_linear_backward, setup_context=_impress_linear_setup)


def _impress_linear_grad_input_setup(ctx, inputs, output):
    grad, weight, words, alpha = inputs
    ctx.save_for_backward(grad, weight, words, alpha)


def _impress_linear_grad_input_backward(ctx, gg):
    grad, weight, words, alpha = ctx.saved_tensors
    needs_g, needs_w, _, needs_a = ctx.needs_input_grad
    rows, cols = weight.shape
    d_grad = grad_weight = grad_alpha = None
    if needs_g:  # out = grad @ W_eff, so d grad = gg @ W_eff^T
        d_grad = _impress_linear(gg, weight, words, alpha, None)
    if needs_w or needs_a:
        g_eff = grad.reshape(-1, rows).t() @ gg.reshape(-1, cols)
        grad_weight, grad_alpha = grads_of_effective_weight(g_eff, weight, words, alpha, needs_w, needs_a)
    return d_grad, grad_weight, None, grad_alpha


_impress_linear_grad_input.register_autograd(_impress_linear_grad_input_backward, setup_context=_impress_linear_grad_input_setup)


def impress_linear(x: Tensor, weight: Tensor, packed: PackedMasks, alpha: Tensor, bias: Tensor | None = None) -> Tensor:
    """`F.linear(x, combine(weight, packed, alpha), bias)`.

    On a backend without a fused impress_linear (native), this is that composition itself, so that
    autograd keeps the W_eff of the forward for the input gradient (`grad @ W_eff`) instead of
    combining the masks a second time in backward: one weight-sized tensor per layer, the memory a
    plain layer's weight takes, for one combine less per step. The fused op (Triton, reference) keeps
    only the packed bits (and so does any backend under torch.compile)."""
    check_packed(weight, packed)
    # Under torch.compile the fused op stays one opaque node (it composes inside for a backend
    # without a fused primitive); the backend choice reads a ContextVar, which dynamo on
    # torch 2.11 cannot trace.
    if not torch.compiler.is_compiling() and not has_kernel(x.device, "impress_linear"):
        impress_linear_args(x, weight, packed.words, alpha, bias)
        return F.linear(x, _combine(weight, packed.words, alpha), bias)
    return _impress_linear(x, weight, packed.words, alpha, bias)
