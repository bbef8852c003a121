"""threshold_mask and threshold_weight: SupSup's fast masks, `scores >= 0` (docs/design.md §2.3),
alone or fused with the weight, straight through in backward."""

from __future__ import annotations

from torch import Tensor

from .dispatch import primitive_op


@primitive_op()
def _threshold_mask(scores: Tensor) -> Tensor: ...


_threshold_mask.register_autograd(lambda ctx, grad: grad)


@primitive_op()
def _threshold_weight(weight: Tensor, scores: Tensor) -> Tensor: ...


def _threshold_weight_setup(ctx, inputs, output):
    weight, scores = inputs
    ctx.save_for_backward(weight, scores)


def _threshold_weight_backward(ctx, grad):
    # Straight through the mask: the scores get grad * weight, one elementwise product.
    weight, scores = ctx.saved_tensors
    grad_weight = grad * _threshold_mask(scores) if ctx.needs_input_grad[0] else None
    grad_scores = grad * weight if ctx.needs_input_grad[1] else None
    return grad_weight, grad_scores


_threshold_weight.register_autograd(_threshold_weight_backward, setup_context=_threshold_weight_setup)


def threshold_mask(scores: Tensor) -> Tensor:
    """1.0 where `scores >= 0`, else 0.0 (SupSup's fast masks); straight-through backward."""
    return _threshold_mask(scores)


def threshold_weight(weight: Tensor, scores: Tensor) -> Tensor:
    """`weight * threshold_mask(scores)` in one pass; the scores receive `grad * weight`."""
    return _threshold_weight(weight, scores)
