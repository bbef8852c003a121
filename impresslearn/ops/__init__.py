"""Autograd-aware functional ops, registered with `torch.library` (namespace `impresslearn`).

This package is the only place that chooses a backend (`dispatch.py`): each op checks its inputs,
then calls the primitive of the same name in the backend that `impresslearn.backend(...)` forces,
or, under "auto", the first of `backends.auto_order(device)` that runs on the inputs' device. A
file per primitive (or pair): combine.py, impress_linear.py, impress_conv2d.py, masked_weight.py, popup.py,
popup_weight.py, threshold.py, pack.py, task_linear.py; the checks they share in checks.py. Each primitive's op
is declared once with `dispatch.primitive_op(check=, fake=)` over its typed signature: the op and
its fake run the same check.

Public functions (docs/design.md §4.2):

    combine(weight, packed, alpha)                 weight * Σ_t alpha[t] * masks[t]
    impress_linear(x, weight, packed, alpha, bias) F.linear(x, combine(...), bias)
    impress_conv2d(x, weight, packed, alpha, bias, stride, padding, dilation, groups)
    popup_mask(scores, density)                    top-k mask, straight-through backward
    popup_pack(scores, density)                    the same mask as a one-mask PackedMasks
    threshold_mask(scores)                         scores >= 0, straight-through backward
    popup_weight(weight, scores, density)          weight * popup_mask(|scores|), fused (edge-popup layers)
    threshold_weight(weight, scores)               weight * threshold_mask(scores), fused (threshold layers)
    pack_bits(bits), unpack_bits(words, cols)      the packed format's codec, on the backend
    pack_masks(masks), unpack_masks(packed)        format.pack_masks / PackedMasks.unpack through it
    every_task_linear(x, weight, packed, alphas)   [S, ..., N]: x under every task's weight
    task_row_linear(x, weight, packed, alphas, task)  row i under task[i]'s weight (mixed batches)

`alpha` is `[T]` (one coefficient per mask for the layer) or `[T, rows]` (per output channel).
Backward of combine: d alpha = Σ G ⊙ W ⊙ M_t and d weight = G ⊙ Σ_t alpha_t M_t, which is
`combine(G, packed, alpha)` again, so each backend needs only two combine primitives.
Backward of impress_linear takes its input gradient from `impress_linear_grad_input`
(`grad @ W_eff`, a primitive so that a backend can read the packed words transposed).
"""

from __future__ import annotations

from ..checks import popup_k
from .combine import _combine, _combine_grad_alpha, combine  # noqa: F401
from .dispatch import backend_for, primitive_backends
from .impress_conv2d import _impress_conv2d, impress_conv2d  # noqa: F401
from .impress_linear import _impress_linear, _impress_linear_grad_input, impress_linear  # noqa: F401
from .masked_weight import _masked_weight, masked_weight  # noqa: F401
from .pack import _pack_bits, _unpack_bits, pack_bits, pack_masks, unpack_bits, unpack_masks  # noqa: F401
from .popup import _popup_mask, _popup_pack, popup_mask, popup_pack  # noqa: F401
from .popup_weight import _popup_weight, _popup_weight_grad_scores, popup_weight  # noqa: F401
from .task_linear import _every_task_linear, _task_row_linear, every_task_linear, task_row_linear  # noqa: F401
from .threshold import _threshold_mask, _threshold_weight, threshold_mask, threshold_weight  # noqa: F401

__all__ = [
    "combine",
    "impress_linear",
    "impress_conv2d",
    "every_task_linear",
    "task_row_linear",
    "masked_weight",
    "popup_mask",
    "popup_pack",
    "threshold_mask",
    "popup_weight",
    "threshold_weight",
    "popup_k",
    "backend_for",
    "primitive_backends",
    "pack_bits",
    "unpack_bits",
    "pack_masks",
    "unpack_masks",
]

# The registered ops (`_<name>`, imported above) stay reachable as `ops._<name>` for
# torch.library.opcheck and the tests.
