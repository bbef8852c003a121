"""popup_mask and popup_pack: the edge-popup top-k mask of scores (docs/design.md §2.2), as a
float mask with a straight-through gradient, or packed."""

from __future__ import annotations

from torch import Tensor

from ..checks import check_scores, popup_k
from ..format import PackedMasks
from .dispatch import primitive_op


@primitive_op()
def _popup_mask(scores: Tensor, k: int) -> Tensor: ...


_popup_mask.register_autograd(lambda ctx, grad: (grad, None))


@primitive_op()
def _popup_pack(scores: Tensor, k: int) -> Tensor: ...


def popup_mask(scores: Tensor, density: float) -> Tensor:
    """1.0 at the `k = numel - floor((1 - density) * numel)` largest entries, ties toward the
    lower flat index, 0.0 elsewhere; the gradient passes straight through to `scores`.

    Layers pass `scores.abs()` (edge-popup), so the scores receive `sign(S) * grad`.
    """
    check_scores(scores)
    return _popup_mask(scores, popup_k(scores.numel(), density))


def popup_pack(scores: Tensor, density: float) -> PackedMasks:
    """The `popup_mask` of `scores` as a one-mask `PackedMasks` (no gradient)."""
    check_scores(scores, packed=True)
    return PackedMasks(_popup_pack(scores, popup_k(scores.numel(), density)), scores.shape)
