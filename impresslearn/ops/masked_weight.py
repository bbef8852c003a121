"""masked_weight: one packed mask over a weight, `W ⊙ M` (a finished SupSup task's effective
weight, docs/design.md §4.4), without an alpha or a float mask."""

from __future__ import annotations

from torch import Tensor

from ..format import PackedMasks
from .checks import check_combine, check_packed
from .dispatch import primitive_op


def _check(weight: Tensor, words: Tensor) -> None:
    check_combine(weight, words, weight.new_ones(words.shape[0] if words.dim() == 3 else 1))
    if words.shape[0] != 1:
        raise ValueError(f"masked_weight takes words of one mask, got {words.shape[0]} (shape {tuple(words.shape)})")


@primitive_op(check=_check, fake=lambda weight, words: weight.new_empty(weight.shape))
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
