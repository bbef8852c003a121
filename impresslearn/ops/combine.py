"""combine and combine_grad_alpha: `W ⊙ Σ_t alpha_t M_t` from the packed words, and its gradient.

Backward of combine: d alpha = Σ G ⊙ W ⊙ M_t (`combine_grad_alpha`) and d weight =
G ⊙ Σ_t alpha_t M_t, which is `combine(G, words, alpha)` again (docs/design.md §2.5).
"""

from __future__ import annotations

from torch import Tensor

from ..checks import check_packed
from ..format import PackedMasks
from .dispatch import primitive_op


@primitive_op()
def _combine(weight: Tensor, words: Tensor, alpha: Tensor) -> Tensor: ...


@primitive_op()
def _combine_grad_alpha(grad: Tensor, weight: Tensor, words: Tensor, alpha: Tensor) -> Tensor: ...


def _combine_grad_alpha_setup(ctx, inputs, output):
    grad, weight, words, alpha = inputs
    ctx.save_for_backward(grad, weight, words)


def _combine_grad_alpha_backward(ctx, gg):
    # d alpha_t = Σ G ⊙ W ⊙ M_t is bilinear in G and W and does not depend on alpha's value:
    # pulling gg back gives W ⊙ Σ_t gg_t M_t for G and G ⊙ Σ_t gg_t M_t for W (double backward).
    grad, weight, words = ctx.saved_tensors
    d_grad = _combine(weight, words, gg) if ctx.needs_input_grad[0] else None
    d_weight = _combine(grad, words, gg) if ctx.needs_input_grad[1] else None
    return d_grad, d_weight, None, None


_combine_grad_alpha.register_autograd(_combine_grad_alpha_backward, setup_context=_combine_grad_alpha_setup)


def _combine_setup(ctx, inputs, output):
    weight, words, alpha = inputs
    ctx.save_for_backward(weight, words, alpha)


def _combine_backward(ctx, grad):
    weight, words, alpha = ctx.saved_tensors
    grad_weight = _combine(grad, words, alpha) if ctx.needs_input_grad[0] else None
    grad_alpha = _combine_grad_alpha(grad, weight, words, alpha) if ctx.needs_input_grad[2] else None
    return grad_weight, None, grad_alpha


_combine.register_autograd(_combine_backward, setup_context=_combine_setup)


def grads_of_effective_weight(g_eff: Tensor, weight: Tensor, words: Tensor, alpha: Tensor, needs_weight: bool, needs_alpha: bool):
    """Chain a gradient w.r.t. `W_eff = combine(weight, words, alpha)` back to weight and alpha."""
    grad_weight = _combine(g_eff, words, alpha) if needs_weight else None
    grad_alpha = _combine_grad_alpha(g_eff, weight, words, alpha) if needs_alpha else None
    return grad_weight, grad_alpha


def combine(weight: Tensor, packed: PackedMasks, alpha: Tensor) -> Tensor:
    """`weight * Σ_t alpha[t] * masks[t]`, differentiable in `weight` and `alpha`."""
    check_packed(weight, packed)
    return _combine(weight, packed.words, alpha)
