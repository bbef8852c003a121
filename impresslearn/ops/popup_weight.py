"""popup_weight and its scores gradient: an edge-popup layer's effective weight
`weight * popup_mask(|scores|, k)` and `grad * weight * sgn(scores)`, each in one pass over the
weights (no float mask, |scores| or grad * weight tensor; docs/design.md §7.9)."""

from __future__ import annotations

from torch import Tensor

from ..checks import check_scores, popup_k
from .dispatch import primitive_op
from .popup import _popup_mask


@primitive_op()
def _popup_weight(weight: Tensor, scores: Tensor, k: int) -> Tensor: ...


@primitive_op()
def _popup_weight_grad_scores(grad: Tensor, weight: Tensor, scores: Tensor) -> Tensor: ...


def _popup_weight_grad_scores_setup(ctx, inputs, output):
    grad, weight, scores = inputs
    ctx.save_for_backward(grad, weight, scores)


def _popup_weight_grad_scores_backward(ctx, gg):
    # out = grad * weight * sgn(scores): linear in grad and in weight, and sgn has zero derivative.
    grad, weight, scores = ctx.saved_tensors
    sgn = scores.sgn()
    d_grad = gg * weight * sgn if ctx.needs_input_grad[0] else None
    d_weight = gg * grad * sgn if ctx.needs_input_grad[1] else None
    return d_grad, d_weight, None


_popup_weight_grad_scores.register_autograd(_popup_weight_grad_scores_backward, setup_context=_popup_weight_grad_scores_setup)


def _popup_weight_setup(ctx, inputs, output):
    weight, scores, k = inputs
    ctx.k = k
    ctx.save_for_backward(weight, scores)


def _popup_weight_backward(ctx, grad):
    weight, scores = ctx.saved_tensors
    needs_w, needs_s = ctx.needs_input_grad[:2]
    # The weight is a frozen buffer in the layers; its gradient (grad * mask) reselects the mask.
    grad_weight = grad * _popup_mask(scores.abs(), ctx.k) if needs_w else None
    grad_scores = _popup_weight_grad_scores(grad, weight, scores) if needs_s else None
    return grad_weight, grad_scores, None


_popup_weight.register_autograd(_popup_weight_backward, setup_context=_popup_weight_setup)


def popup_weight(weight: Tensor, scores: Tensor, density: float) -> Tensor:
    """`weight * popup_mask(scores.abs(), density)` (an edge-popup layer's effective weight) in one
    pass after the selection; the scores receive `grad * weight * sgn(scores)`, straight through the
    mask as `popup_mask` has it."""
    check_scores(scores)
    return _popup_weight(weight, scores, popup_k(scores.numel(), density))
