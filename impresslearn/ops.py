"""Autograd-aware functional ops, registered with `torch.library` (namespace `impresslearn`).

This is the only place that chooses a backend: each op checks its inputs, then calls the
primitive of the same name in the backend that `impresslearn.backend(...)` forces, or, under
"auto", the first of `backends.auto_order(device)` that runs on the inputs' device.

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

`alpha` is `[T]` (one coefficient per mask for the layer) or `[T, rows]` (per output channel).
Backward of combine: d alpha = Σ G ⊙ W ⊙ M_t and d weight = G ⊙ Σ_t alpha_t M_t, which is
`combine(G, packed, alpha)` again, so each backend needs only two combine primitives.
Backward of impress_linear takes its input gradient from `impress_linear_grad_input`
(`grad @ W_eff`, a primitive so that a backend can read the packed words transposed).
"""

from __future__ import annotations

import numbers
import types
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from . import backends, reference
from .format import PackedMasks, num_words, rows_cols, set_bit_codec, words_shape
from .primitives import PRIMITIVES, MissingKernel, resolve
from .seeding import kept_count

__all__ = [
    "combine",
    "impress_linear",
    "impress_conv2d",
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
]


# --------------------------------------------------------------------------- backend choice

def _select(device: torch.device) -> types.ModuleType:
    name = backends.requested()
    if name == "auto":
        for candidate in backends.auto_order(device):
            mod = backends.loaded(candidate)
            if mod is not None and mod.supports(device):
                return mod
        return reference
    mod = backends.module(name)
    if not mod.supports(device):
        raise RuntimeError(
            f"backend {name!r} cannot run on {device.type} tensors"
            + (" (set TRITON_INTERPRET=1 before importing triton to run it on the CPU)" if name == "triton" else "")
        )
    return mod


def _primitive(device: torch.device, name: str):
    """The function that runs primitive `name` on `device`: the chosen backend's kernel, or what
    the primitive declares for a backend without one (composed from its other kernels, or the
    portable reference code); `MissingKernel` otherwise, never a silent reference run
    (docs/design.md §5.2).

    Results are made contiguous: the fake implementations promise contiguous outputs, and
    torch.compile checks the real strides against them (an einsum may return a transposed view)."""
    mod = _select(device)
    fn = resolve(mod.KERNELS, name, reference.KERNELS, backends.name_of(mod)).fn
    return lambda *args: fn(*args).contiguous()


def backend_for(device: torch.device | str) -> str:
    """The name of the backend an op on `device` would use here and now."""
    return backends.name_of(_select(torch.device(device)))


def primitive_backends(device: torch.device | str) -> dict[str, str]:
    """For each primitive, what an op on `device` runs here and now: the backend's name where it
    has the kernel, "<backend>, composed from <primitives>" or "reference" (a portable primitive,
    or the reference backend itself), "missing" where the backend has neither."""
    mod = _select(torch.device(device))
    name = backends.name_of(mod)
    out = {}
    for prim, spec in PRIMITIVES.items():
        try:
            how = resolve(mod.KERNELS, prim, reference.KERNELS, name).how
        except MissingKernel:
            out[prim] = "missing"
            continue
        out[prim] = {"kernel": name, "portable": "reference",
                     "composed": f"{name}, composed from {', '.join(spec.composed_from)}"}[how]
    return out


# --------------------------------------------------------------------------- input checks

def _check_same_device(**tensors: Tensor | None) -> None:
    present = {k: t.device for k, t in tensors.items() if t is not None}
    if len(set(present.values())) > 1:
        raise ValueError("tensors must be on one device, got " + ", ".join(f"{k} on {d}" for k, d in present.items()))


def _check_combine(weight: Tensor, words: Tensor, alpha: Tensor) -> None:
    if not weight.is_floating_point():
        raise TypeError(f"weight must be a floating-point tensor, got {weight.dtype}")
    if not alpha.is_floating_point():
        raise TypeError(f"alpha must be a floating-point tensor, got {alpha.dtype}")
    if words.dtype != torch.int32:
        raise TypeError(f"packed words must be torch.int32, got {words.dtype}")
    # What the packed format cannot hold is refused here, for every backend alike (design.md §5.4).
    if weight.dim() == 0:
        raise ValueError("weight must have at least one dimension (its rows), got a 0-d tensor")
    rows, cols = rows_cols(weight.shape)
    if rows == 0 or cols == 0:
        raise ValueError(f"weight of shape {tuple(weight.shape)} is empty, and masks cover only non-empty weights")
    if words.dim() != 3 or tuple(words.shape[1:]) != (rows, num_words(cols)):
        raise ValueError(
            f"packed words of shape {tuple(words.shape)} do not fit a weight of shape {tuple(weight.shape)} "
            f"(expected [T, {rows}, {num_words(cols)}])"
        )
    t = words.shape[0]
    if t == 0:
        raise ValueError(f"packed words of shape {tuple(words.shape)} hold no masks (T = 0), and at least one is needed")
    if tuple(alpha.shape) not in ((t,), (t, rows)):
        raise ValueError(
            f"alpha must have shape [{t}] (per layer) or [{t}, {rows}] (per output channel) "
            f"for {t} masks, got {tuple(alpha.shape)}"
        )
    _check_same_device(weight=weight, words=words, alpha=alpha)


def _check_packed(weight: Tensor, packed: PackedMasks) -> None:
    if not isinstance(packed, PackedMasks):
        raise TypeError(f"packed must be impresslearn.PackedMasks, got {type(packed).__name__}")
    if tuple(packed.shape) != tuple(weight.shape):
        raise ValueError(f"masks of shape {tuple(packed.shape)} do not cover a weight of shape {tuple(weight.shape)}")


def _check_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> None:
    if weight.dim() != 2:
        raise ValueError(f"impress_linear needs a 2-D weight, got shape {tuple(weight.shape)}")
    if x.dim() < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"input of shape {tuple(x.shape)} does not match a weight of shape {tuple(weight.shape)}")
    if x.dtype != weight.dtype:
        raise TypeError(f"input dtype {x.dtype} differs from weight dtype {weight.dtype}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"bias must have shape [{weight.shape[0]}], got {tuple(bias.shape)}")
    _check_same_device(x=x, weight=weight, bias=bias)


def _check_scores(scores: Tensor, *, packed: bool = False) -> None:
    """Floating scores with at least one entry; a 0-d tensor is one score, except for a packed
    mask, which needs a weight shape of at least one dimension (design.md §5.4)."""
    if not scores.is_floating_point():
        raise TypeError(f"scores must be a floating-point tensor, got {scores.dtype}")
    if scores.numel() == 0:
        raise ValueError(f"scores must not be empty, got shape {tuple(scores.shape)}")
    if packed and scores.dim() == 0:
        raise ValueError("popup_pack needs scores of at least one dimension (a weight shape to pack), got a 0-d tensor")


def popup_k(numel: int, density: float) -> int:
    """Entries kept at `density`: `numel - floor((1 - density) * numel)` (the contract's count)."""
    if isinstance(density, bool) or not isinstance(density, numbers.Real):
        raise TypeError(f"density must be a real number, got {type(density).__name__}")
    density = float(density)
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must lie in (0, 1], got {density}")
    return kept_count(numel, density)


# --------------------------------------------------------------------------- combine

@torch.library.custom_op("impresslearn::combine", mutates_args=())
def _combine(weight: Tensor, words: Tensor, alpha: Tensor) -> Tensor:
    _check_combine(weight, words, alpha)
    return _primitive(weight.device, "combine")(weight.contiguous(), words.contiguous(), alpha.contiguous())


@_combine.register_fake
def _(weight, words, alpha):
    _check_combine(weight, words, alpha)
    return weight.new_empty(weight.shape)


@torch.library.custom_op("impresslearn::combine_grad_alpha", mutates_args=())
def _combine_grad_alpha(grad: Tensor, weight: Tensor, words: Tensor, alpha: Tensor) -> Tensor:
    _check_combine(weight, words, alpha)
    if grad.shape != weight.shape:
        raise ValueError(f"grad of shape {tuple(grad.shape)} does not match weight {tuple(weight.shape)}")
    return _primitive(weight.device, "combine_grad_alpha")(
        grad.contiguous(), weight.contiguous(), words.contiguous(), alpha.contiguous()
    )


@_combine_grad_alpha.register_fake
def _(grad, weight, words, alpha):
    _check_combine(weight, words, alpha)
    return alpha.new_empty(alpha.shape)


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


def combine(weight: Tensor, packed: PackedMasks, alpha: Tensor) -> Tensor:
    """`weight * Σ_t alpha[t] * masks[t]`, differentiable in `weight` and `alpha`."""
    _check_packed(weight, packed)
    return _combine(weight, packed.words, alpha)


def _grads_of_effective_weight(g_eff: Tensor, weight: Tensor, words: Tensor, alpha: Tensor, needs_weight: bool,
                               needs_alpha: bool):
    """Chain a gradient w.r.t. `W_eff = combine(weight, words, alpha)` back to weight and alpha."""
    grad_weight = _combine(g_eff, words, alpha) if needs_weight else None
    grad_alpha = _combine_grad_alpha(g_eff, weight, words, alpha) if needs_alpha else None
    return grad_weight, grad_alpha


# --------------------------------------------------------------------------- impress_linear

@torch.library.custom_op("impresslearn::impress_linear", mutates_args=())
def _impress_linear(x: Tensor, weight: Tensor, words: Tensor, alpha: Tensor, bias: Tensor | None) -> Tensor:
    _check_combine(weight, words, alpha)
    _check_linear(x, weight, bias)
    return _primitive(x.device, "impress_linear")(
        x.contiguous(), weight.contiguous(), words.contiguous(), alpha.contiguous(),
        None if bias is None else bias.contiguous(),
    )


@_impress_linear.register_fake
def _(x, weight, words, alpha, bias):
    _check_combine(weight, words, alpha)
    _check_linear(x, weight, bias)
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


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
        grad_weight, grad_alpha = _grads_of_effective_weight(g_eff, weight, words, alpha, needs_w, needs_a)
    if ctx.has_bias and needs_b:
        grad_bias = grad.reshape(-1, rows).sum(0)
    return grad_x, grad_weight, None, grad_alpha, grad_bias


_impress_linear.register_autograd(_impress_linear_backward, setup_context=_impress_linear_setup)


def _check_grad_output(grad: Tensor, weight: Tensor) -> None:
    if grad.dim() < 1 or grad.shape[-1] != weight.shape[0]:
        raise ValueError(f"gradient of shape {tuple(grad.shape)} does not match a weight of shape {tuple(weight.shape)}")
    if grad.dtype != weight.dtype:
        raise TypeError(f"gradient dtype {grad.dtype} differs from weight dtype {weight.dtype}")
    _check_same_device(grad=grad, weight=weight)


# The input gradient is its own op so that a backend can walk the packed words transposed
# (grad @ W_eff) instead of forming W_eff; it is differentiable for double backward.
@torch.library.custom_op("impresslearn::impress_linear_grad_input", mutates_args=())
def _impress_linear_grad_input(grad: Tensor, weight: Tensor, words: Tensor, alpha: Tensor) -> Tensor:
    _check_combine(weight, words, alpha)
    _check_grad_output(grad, weight)
    return _primitive(grad.device, "impress_linear_grad_input")(
        grad.contiguous(), weight.contiguous(), words.contiguous(), alpha.contiguous()
    )


@_impress_linear_grad_input.register_fake
def _(grad, weight, words, alpha):
    _check_combine(weight, words, alpha)
    _check_grad_output(grad, weight)
    return grad.new_empty((*grad.shape[:-1], weight.shape[1]))


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
        grad_weight, grad_alpha = _grads_of_effective_weight(g_eff, weight, words, alpha, needs_w, needs_a)
    return d_grad, grad_weight, None, grad_alpha


_impress_linear_grad_input.register_autograd(_impress_linear_grad_input_backward,
                                             setup_context=_impress_linear_grad_input_setup)


def impress_linear(x: Tensor, weight: Tensor, packed: PackedMasks, alpha: Tensor, bias: Tensor | None = None) -> Tensor:
    """`F.linear(x, combine(weight, packed, alpha), bias)`.

    On a backend without a fused impress_linear (native), this is that composition itself, so that
    autograd keeps the W_eff of the forward for the input gradient (`grad @ W_eff`) instead of
    combining the masks a second time in backward: one weight-sized tensor per layer, the memory a
    plain layer's weight takes, for one combine less per step. The fused op (Triton, reference) keeps
    only the packed bits (and so does any backend under torch.compile)."""
    _check_packed(weight, packed)
    # Under torch.compile the fused op stays one opaque node (it composes inside for a backend
    # without a fused primitive); the backend choice reads a ContextVar, which dynamo on
    # torch 2.11 cannot trace.
    if not torch.compiler.is_compiling() and not hasattr(_select(x.device), "impress_linear"):
        _check_combine(weight, packed.words, alpha)
        _check_linear(x, weight, bias)
        return F.linear(x, _combine(weight, packed.words, alpha), bias)
    return _impress_linear(x, weight, packed.words, alpha, bias)


# --------------------------------------------------------------------------- impress_conv2d

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


def _check_conv(x: Tensor, weight: Tensor, bias: Tensor | None, groups: int) -> None:
    if weight.dim() != 4:
        raise ValueError(f"impress_conv2d needs a 4-D weight, got shape {tuple(weight.shape)}")
    if x.dim() not in (3, 4) or x.shape[-3] != weight.shape[1] * groups:
        raise ValueError(
            f"input of shape {tuple(x.shape)} does not match a weight of shape {tuple(weight.shape)} with groups={groups}"
        )
    if x.dtype != weight.dtype:
        raise TypeError(f"input dtype {x.dtype} differs from weight dtype {weight.dtype}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"bias must have shape [{weight.shape[0]}], got {tuple(bias.shape)}")
    _check_same_device(x=x, weight=weight, bias=bias)


@torch.library.custom_op("impresslearn::impress_conv2d", mutates_args=())
def _impress_conv2d(x: Tensor, weight: Tensor, words: Tensor, alpha: Tensor, bias: Tensor | None,
                    stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int], groups: int) -> Tensor:
    _check_combine(weight, words, alpha)
    _check_conv(x, weight, bias, groups)
    w_eff = _primitive(weight.device, "combine")(weight.contiguous(), words.contiguous(), alpha.contiguous())
    return F.conv2d(x, w_eff, bias, stride, padding, dilation, groups)


@_impress_conv2d.register_fake
def _(x, weight, words, alpha, bias, stride, padding, dilation, groups):
    _check_combine(weight, words, alpha)
    _check_conv(x, weight, bias, groups)
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
        gb, xb, w_eff, [weight.shape[0]] if ctx.has_bias else None,
        stride, padding, dilation, False, [0, 0], groups,
        [needs_x, needs_w or needs_a, ctx.has_bias and needs_b],
    )
    if grad_x is not None and not batched:
        grad_x = grad_x.squeeze(0)
    grad_weight = grad_alpha = None
    if needs_w or needs_a:
        grad_weight, grad_alpha = _grads_of_effective_weight(g_eff, weight, words, alpha, needs_w, needs_a)
    return grad_x, grad_weight, None, grad_alpha, grad_bias, None, None, None, None


_impress_conv2d.register_autograd(_impress_conv2d_backward, setup_context=_impress_conv2d_setup)


def impress_conv2d(x: Tensor, weight: Tensor, packed: PackedMasks, alpha: Tensor, bias: Tensor | None = None,
                   stride=1, padding=0, dilation=1, groups: int = 1) -> Tensor:
    """`F.conv2d(x, combine(weight, packed, alpha), bias, stride, padding, dilation, groups)`."""
    _check_packed(weight, packed)
    dilation = _pair(dilation, "dilation")
    return _impress_conv2d(x, weight, packed.words, alpha, bias, _pair(stride, "stride"),
                           _explicit_padding(padding, weight, dilation), dilation, int(groups))


# --------------------------------------------------------------------------- masks from scores

def _check_k(scores: Tensor, k: int, *, packed: bool = False) -> None:
    _check_scores(scores, packed=packed)
    if not 1 <= k <= scores.numel():
        raise ValueError(f"k must lie in [1, {scores.numel()}], got {k}")


def _straight_through(ctx, grad):
    return grad, None


@torch.library.custom_op("impresslearn::popup_mask", mutates_args=())
def _popup_mask(scores: Tensor, k: int) -> Tensor:
    _check_k(scores, k)
    return _primitive(scores.device, "popup_mask")(scores.contiguous(), k)


@_popup_mask.register_fake
def _(scores, k):
    _check_k(scores, k)
    return scores.new_empty(scores.shape)


_popup_mask.register_autograd(_straight_through)


def popup_mask(scores: Tensor, density: float) -> Tensor:
    """1.0 at the `k = numel - floor((1 - density) * numel)` largest entries, ties toward the
    lower flat index, 0.0 elsewhere; the gradient passes straight through to `scores`.

    Layers pass `scores.abs()` (edge-popup), so the scores receive `sign(S) * grad`.
    """
    _check_scores(scores)
    return _popup_mask(scores, popup_k(scores.numel(), density))


@torch.library.custom_op("impresslearn::popup_pack", mutates_args=())
def _popup_pack(scores: Tensor, k: int) -> Tensor:
    _check_k(scores, k, packed=True)
    return _primitive(scores.device, "popup_pack")(scores.contiguous(), k)


@_popup_pack.register_fake
def _(scores, k):
    _check_k(scores, k, packed=True)
    return scores.new_empty(words_shape(scores.shape), dtype=torch.int32)


def popup_pack(scores: Tensor, density: float) -> PackedMasks:
    """The `popup_mask` of `scores` as a one-mask `PackedMasks` (no gradient)."""
    _check_scores(scores, packed=True)
    return PackedMasks(_popup_pack(scores, popup_k(scores.numel(), density)), scores.shape)


@torch.library.custom_op("impresslearn::threshold_mask", mutates_args=())
def _threshold_mask(scores: Tensor) -> Tensor:
    _check_scores(scores)
    return _primitive(scores.device, "threshold_mask")(scores.contiguous())


@_threshold_mask.register_fake
def _(scores):
    _check_scores(scores)
    return scores.new_empty(scores.shape)


_threshold_mask.register_autograd(lambda ctx, grad: grad)


def threshold_mask(scores: Tensor) -> Tensor:
    """1.0 where `scores >= 0`, else 0.0 (SupSup's fast masks); straight-through backward."""
    return _threshold_mask(scores)


# --------------------------------------------------------------------------- fused mask steps
# A SupSup layer's effective weight and the scores' gradient, each in one pass over the weights:
# the same values as `weight * popup_mask(scores.abs(), density)` and `weight * threshold_mask(scores)`
# with their straight-through backward, without a float mask, |scores| or grad * weight tensor.

def _check_weight_scores(weight: Tensor, scores: Tensor) -> None:
    _check_scores(scores)
    if weight.dtype != scores.dtype:
        raise TypeError(f"weight dtype {weight.dtype} differs from scores dtype {scores.dtype}")
    if weight.shape != scores.shape:
        raise ValueError(f"weight of shape {tuple(weight.shape)} and scores of shape {tuple(scores.shape)} differ")
    _check_same_device(weight=weight, scores=scores)


@torch.library.custom_op("impresslearn::popup_weight", mutates_args=())
def _popup_weight(weight: Tensor, scores: Tensor, k: int) -> Tensor:
    _check_weight_scores(weight, scores)
    _check_k(scores, k)
    return _primitive(scores.device, "popup_weight")(weight.contiguous(), scores.contiguous(), k)


@_popup_weight.register_fake
def _(weight, scores, k):
    _check_weight_scores(weight, scores)
    _check_k(scores, k)
    return scores.new_empty(scores.shape)


@torch.library.custom_op("impresslearn::popup_weight_grad_scores", mutates_args=())
def _popup_weight_grad_scores(grad: Tensor, weight: Tensor, scores: Tensor) -> Tensor:
    _check_weight_scores(weight, scores)
    _check_weight_scores(grad, scores)
    return _primitive(scores.device, "popup_weight_grad_scores")(grad.contiguous(), weight.contiguous(),
                                                                 scores.contiguous())


@_popup_weight_grad_scores.register_fake
def _(grad, weight, scores):
    _check_weight_scores(weight, scores)
    _check_weight_scores(grad, scores)
    return scores.new_empty(scores.shape)


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


_popup_weight_grad_scores.register_autograd(_popup_weight_grad_scores_backward,
                                            setup_context=_popup_weight_grad_scores_setup)


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
    _check_scores(scores)
    return _popup_weight(weight, scores, popup_k(scores.numel(), density))


@torch.library.custom_op("impresslearn::threshold_weight", mutates_args=())
def _threshold_weight(weight: Tensor, scores: Tensor) -> Tensor:
    _check_weight_scores(weight, scores)
    return _primitive(scores.device, "threshold_weight")(weight.contiguous(), scores.contiguous())


@_threshold_weight.register_fake
def _(weight, scores):
    _check_weight_scores(weight, scores)
    return scores.new_empty(scores.shape)


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


def threshold_weight(weight: Tensor, scores: Tensor) -> Tensor:
    """`weight * threshold_mask(scores)` in one pass; the scores receive `grad * weight`."""
    return _threshold_weight(weight, scores)


# --------------------------------------------------------------------------- packing

def _check_bits(bits: Tensor) -> None:
    if bits.dim() != 3:
        raise ValueError(f"bits must have shape [T, rows, cols], got {tuple(bits.shape)}")
    if bits.is_complex():
        raise TypeError(f"bits must be bool, integer or floating, got {bits.dtype}")


@torch.library.custom_op("impresslearn::pack_bits", mutates_args=())
def _pack_bits(bits: Tensor) -> Tensor:
    _check_bits(bits)
    return _primitive(bits.device, "pack_bits")(bits.contiguous())


@_pack_bits.register_fake
def _(bits):
    _check_bits(bits)
    return bits.new_empty(words_shape(bits.shape[1:], bits.shape[0]), dtype=torch.int32)


def _check_words(words: Tensor, cols: int) -> None:
    if words.dtype != torch.int32 or words.dim() != 3:
        raise ValueError(f"words must be int32 [T, rows, nw], got {words.dtype} {tuple(words.shape)}")
    if cols < 0 or num_words(cols) != words.shape[2]:
        raise ValueError(f"{words.shape[2]} words per row cannot hold {cols} columns")


@torch.library.custom_op("impresslearn::unpack_bits", mutates_args=())
def _unpack_bits(words: Tensor, cols: int) -> Tensor:
    _check_words(words, cols)
    return _primitive(words.device, "unpack_bits")(words.contiguous(), cols)


@_unpack_bits.register_fake
def _(words, cols):
    _check_words(words, cols)
    t, rows, _ = words.shape
    return words.new_empty((t, rows, cols), dtype=torch.bool)


def pack_bits(bits: Tensor) -> Tensor:
    """A bool (nonzero = 1) tensor `[T, rows, cols]` as int32 words `[T, rows, ceil(cols / 32)]`."""
    return _pack_bits(bits)


def unpack_bits(words: Tensor, cols: int) -> Tensor:
    """Int32 words `[T, rows, nw]` as a bool tensor `[T, rows, cols]`."""
    return _unpack_bits(words, int(cols))


# pack_masks and PackedMasks.unpack (layer 1) pack through the backends from now on.
set_bit_codec(pack_bits, unpack_bits)
