"""Pure-PyTorch reference of every primitive: the oracle the other backends are tested against.

Tensors in, tensors out; no autograd here (the op layer adds it). `KERNELS` registers every
primitive that `impresslearn.primitives` declares; the Triton (`impresslearn.kernels`) and native
(`impresslearn.native`) backends register theirs with the same signatures. Shapes:

    weight  [rows, ...]                 any float dtype
    words   int32 [T, rows, nw]         the packed basis (see `impresslearn.format`)
    alpha   [T] (per layer) or [T, rows] (per output channel)

These unpack the masks into dense tensors; they are written to be obviously right, not fast.
`pack_bits(bits) -> words` and `unpack_bits(words, cols) -> bool` are the format's own (imported
below), the oracle of the backends' packing primitives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .format import pack_bits, rows_cols, unpack_bits


def supports(device: torch.device) -> bool:
    """The reference runs wherever PyTorch does."""
    return True


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _dense_coefficients(words: torch.Tensor, alpha: torch.Tensor, cols: int, acc: torch.dtype) -> torch.Tensor:
    """`Σ_t alpha_t M_t` as a dense `[rows, cols]` tensor in the accumulation dtype.

    A bit of 0 contributes exactly 0, whatever alpha_t is (docs/design.md §5.4): with a NaN or
    infinite alpha the sum runs over the set bits only, where a product with the dense mask would
    give 0 · NaN = NaN. Finite alpha takes the product (the same sum, and the same bits as before).
    """
    bits = unpack_bits(words, cols)  # [T, rows, cols]
    a = alpha.to(acc)
    if not bool(torch.isfinite(a).all()):
        return torch.where(bits, a.reshape(*a.shape, *([1] * (3 - a.dim()))), 0).sum(0)
    masks = bits.to(acc)
    if a.dim() == 1:
        return torch.einsum("t,trc->rc", a, masks)
    return torch.einsum("tr,trc->rc", a, masks)


def combine(weight: torch.Tensor, words: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """`weight * Σ_t alpha[t] * masks[t]`, accumulated in fp32 (fp64 for fp64), in weight's dtype."""
    rows, cols = rows_cols(weight.shape)
    acc = _acc_dtype(weight.dtype)
    coef = _dense_coefficients(words, alpha, cols, acc)
    return (weight.reshape(rows, cols).to(acc) * coef).to(weight.dtype).reshape(weight.shape)


def combine_grad_alpha(grad: torch.Tensor, weight: torch.Tensor, words: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """`d alpha[t] = Σ grad ⊙ weight ⊙ masks[t]` (per row for per-channel alpha), in alpha's dtype.

    As in combine, a bit of 0 contributes exactly 0: a NaN or infinite `grad * weight` counts only
    in the sums of the masks whose bit is set there."""
    rows, cols = rows_cols(weight.shape)
    acc = _acc_dtype(torch.promote_types(weight.dtype, alpha.dtype))
    gw = grad.reshape(rows, cols).to(acc) * weight.reshape(rows, cols).to(acc)
    bits = unpack_bits(words, cols)
    if not bool(torch.isfinite(gw).all()):
        picked = torch.where(bits, gw, 0)  # [T, rows, cols]
        out = picked.sum((1, 2)) if alpha.dim() == 1 else picked.sum(2)
        return out.to(alpha.dtype)
    masks = bits.to(acc)
    if alpha.dim() == 1:
        out = torch.einsum("rc,trc->t", gw, masks)
    else:
        out = torch.einsum("rc,trc->tr", gw, masks)
    return out.to(alpha.dtype)


def impress_linear(
    x: torch.Tensor, weight: torch.Tensor, words: torch.Tensor, alpha: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    return F.linear(x, combine(weight, words, alpha), bias)


def impress_linear_grad_input(grad: torch.Tensor, weight: torch.Tensor, words: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """`grad @ combine(weight, words, alpha)`: the input gradient of `impress_linear`."""
    return grad @ combine(weight, words, alpha)


def masked_weight(weight: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
    """`weight * masks[0]` for words holding one mask: the product with the 0/1 mask, so that it
    is `combine(weight, words, [1])` bit for bit (an unset bit gives `weight * 0`)."""
    rows, cols = rows_cols(weight.shape)
    mask = unpack_bits(words, cols)[0].to(weight.dtype)
    return (weight.reshape(rows, cols) * mask).reshape(weight.shape)


def _task_weight(weight: torch.Tensor, words: torch.Tensor, alphas: torch.Tensor | None, s: int) -> torch.Tensor:
    return masked_weight(weight, words[s : s + 1]) if alphas is None else combine(weight, words, alphas[s])


def every_task_linear(x: torch.Tensor, weight: torch.Tensor, words: torch.Tensor, alphas: torch.Tensor | None) -> torch.Tensor:
    """`[S, rows, N]`: `F.linear(x, W_eff(s))` for every task s, whose weight is its own mask over
    `weight` (alphas None: S = T) or `combine(weight, words, alphas[s])`."""
    tasks = words.shape[0] if alphas is None else alphas.shape[0]
    return torch.stack([F.linear(x, _task_weight(weight, words, alphas, s)) for s in range(tasks)])


def task_row_linear(
    x: torch.Tensor, weight: torch.Tensor, words: torch.Tensor, alphas: torch.Tensor | None, task: torch.Tensor
) -> torch.Tensor:
    """`[rows, N]`: row i through task `task[i]`'s weight (as every_task_linear's)."""
    out = x.new_zeros((x.shape[0], weight.shape[0]))
    for s in task.unique().tolist():
        rows = task == s
        out[rows] = F.linear(x[rows], _task_weight(weight, words, alphas, s))
    return out


def popup_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """1.0 at the `k` largest entries of `scores` (ties toward the lower flat index), else 0.0."""
    flat = scores.reshape(-1)
    # A stable descending sort keeps equal values in index order, which is the tie rule.
    order = torch.sort(flat, descending=True, stable=True).indices
    out = torch.zeros_like(flat)
    out[order[:k]] = 1
    return out.reshape(scores.shape)


def popup_pack(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The `popup_mask` as packed words `[1, rows, nw]`."""
    rows, cols = rows_cols(scores.shape)
    return pack_bits(popup_mask(scores, k).reshape(1, rows, cols) != 0)


def threshold_mask(scores: torch.Tensor) -> torch.Tensor:
    """1.0 where `scores >= 0`, else 0.0 (SupSup's fast masks)."""
    return (scores >= 0).to(scores.dtype)


def popup_weight(weight: torch.Tensor, scores: torch.Tensor, k: int) -> torch.Tensor:
    """`weight * popup_mask(|scores|, k)`: an edge-popup layer's effective weight."""
    return weight * popup_mask(scores.abs(), k)


def popup_weight_grad_scores(grad: torch.Tensor, weight: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """`grad * weight * sgn(scores)`: the scores' gradient of `popup_weight`, straight through the
    mask and then through |scores| (torch's abs backward, so 0 at a zero score)."""
    return grad * weight * scores.sgn()


def threshold_weight(weight: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """`weight * threshold_mask(scores)`: a SupSup threshold layer's effective weight."""
    return weight * threshold_mask(scores)


# Every primitive of impresslearn.primitives, the oracle of each (docs/design.md §5.1).
KERNELS = {
    "combine": combine,
    "combine_grad_alpha": combine_grad_alpha,
    "every_task_linear": every_task_linear,
    "task_row_linear": task_row_linear,
    "impress_linear": impress_linear,
    "impress_linear_grad_input": impress_linear_grad_input,
    "masked_weight": masked_weight,
    "popup_mask": popup_mask,
    "popup_pack": popup_pack,
    "popup_weight": popup_weight,
    "popup_weight_grad_scores": popup_weight_grad_scores,
    "threshold_mask": threshold_mask,
    "threshold_weight": threshold_weight,
    "pack_bits": pack_bits,
    "unpack_bits": unpack_bits,
}
