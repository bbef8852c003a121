"""masked_weight: one packed mask over a weight, `W ⊙ M` (a finished SupSup task's effective
weight, docs/design.md §4.4), without an alpha or a float mask."""

from __future__ import annotations

from torch import Tensor

from ..checks import check_packed
from ..format import PackedMasks
from .dispatch import primitive_op


@primitive_op()
def _masked_weight(weight: Tensor, words: Tensor) -> Tensor: ...


def _setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[1])


def _backward(ctx, grad):
    # linear in the weight: d weight = grad ⊙ M, the same primitive again
    (words,) = ctx.saved_tensors
    return (_masked_weight(grad, words) if ctx.needs_input_grad[0] else None), None


_masked_weight.register_autograd(_backward, setup_context=_setup)


def masked_weight(weight: Tensor, packed: PackedMasks) -> Tensor:
    """`weight * mask` for a `PackedMasks` of one mask, differentiable in `weight`."""
    check_packed(weight, packed)
    return _masked_weight(weight, packed.words)
