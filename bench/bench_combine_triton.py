"""combine and grad-alpha on ResNet-50 layer shapes: Triton vs dense baselines vs the reference.

Implementations, side by side on the same tensors:

    triton        impresslearn.kernels (packed words, one pass), default coefficient path
    triton_lut, triton_shift_add   the same kernel with each coefficient path forced
    reference     impresslearn.reference (unpacks the masks)
    dense_supsup  masks kept as stacked float tensors, `(alpha * stacked).sum(0) * weight`, with
                  autograd for alpha's gradient (what SupSup-style code does)
    dense_matvec  the best dense alternative: `alpha @ stacked` as one matrix-vector product
                  (and `stacked @ (G ⊙ W)` for the gradient)

`floor_bytes` is what a one-pass kernel must move (W, T bits per weight and W_eff for combine;
G, W and the bits for grad-alpha); `gbps` = floor_bytes / time for every implementation, and
`peak_fraction` divides it by the GPU's peak bandwidth.
"""

from __future__ import annotations

import itertools

import torch
from tqdm import tqdm

from impresslearn import dense, pack_masks, reference
from triton_timing import Setup, out_of_memory, peak_memory_mb, timed_row

RESNET50_SHAPES = {
    "conv1": (64, 3, 7, 7),
    "layer1.conv2": (64, 64, 3, 3),
    "layer1.conv3": (256, 64, 1, 1),
    "layer3.conv2": (256, 256, 3, 3),
    "layer4.conv2": (512, 512, 3, 3),
    "layer4.conv3": (2048, 512, 1, 1),
    "fc": (1000, 2048),
}
MASK_COUNTS = (1, 8, 32, 75, 256)
SMOKE_SHAPES = {"tiny": (6, 3, 3, 3)}
PATHS = {"lut": dict(lut_min_masks=1, lut_per_channel_min_cols=1), "shift_add": dict(lut_min_masks=1 << 30)}
SMOKE_MASK_COUNTS = (1, 9)


def _inputs(shape, t, per_channel, device, gen):
    weight = torch.randn(shape, generator=gen).to(device)
    masks = torch.rand((t, *shape), generator=gen) < 0.3
    packed = pack_masks(masks).to(device)
    alpha = torch.rand((t, shape[0]) if per_channel else (t,), generator=gen).to(device)
    return weight, packed, alpha


def _grad_alpha_matvec(grad, weight, stacked, alpha):
    gw = (grad * weight).reshape(weight.shape[0], -1)
    flat = stacked.reshape(stacked.shape[0], weight.shape[0], -1)
    if alpha.dim() == 1:
        return flat.reshape(stacked.shape[0], -1) @ gw.reshape(-1)
    return torch.einsum("trc,rc->tr", flat, gw)


def _grad_alpha_supsup(grad, weight, stacked, alpha):
    a = alpha.detach().requires_grad_()
    return torch.autograd.grad(dense.combine_dense(weight, stacked, a), a, grad)[0]


def _max_relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.double() - ref.double()).abs().max() / ref.double().abs().max().clamp_min(1e-30))


def run(setup: Setup, peak_gbps) -> list[dict]:
    from impresslearn import kernels

    shapes = SMOKE_SHAPES if setup.smoke else RESNET50_SHAPES
    counts = SMOKE_MASK_COUNTS if setup.smoke else MASK_COUNTS
    gen = torch.Generator().manual_seed(0)
    rows = []
    cases = list(itertools.product(shapes.items(), counts, (False, True)))
    for (layer, shape), t, per_channel in tqdm(cases, desc="combine", leave=False):
        weight, packed, alpha = _inputs(shape, t, per_channel, setup.device, gen)
        words = packed.words
        grad = torch.randn(shape, generator=gen).to(setup.device)
        try:
            stacked = dense.stack_masks(packed)
        except Exception as err:  # the dense baselines' own memory cost
            if not out_of_memory(err):
                raise
            stacked = None
        w_bytes = weight.numel() * weight.element_size()
        ops = {
            "forward": (2 * w_bytes + words.numel() * 4, {
                "triton": lambda: kernels.combine(weight, words, alpha),
                # both coefficient paths forced, to choose the default by measurement
                "triton_lut": lambda: kernels.combine(weight, words, alpha, **PATHS["lut"]),
                "triton_shift_add": lambda: kernels.combine(weight, words, alpha, **PATHS["shift_add"]),
                "reference": lambda: reference.combine(weight, words, alpha),
                "dense_supsup": lambda: dense.combine_dense(weight, stacked, alpha),
                "dense_matvec": lambda: dense.combine_matvec(weight, stacked, alpha),
            }),
            "grad_alpha": (2 * w_bytes + words.numel() * 4, {
                "triton": lambda: kernels.combine_grad_alpha(grad, weight, words, alpha),
                "reference": lambda: reference.combine_grad_alpha(grad, weight, words, alpha),
                "dense_supsup": lambda: _grad_alpha_supsup(grad, weight, stacked, alpha),
                "dense_matvec": lambda: _grad_alpha_matvec(grad, weight, stacked, alpha),
            }),
        }
        checks = {  # the benchmark also shows the kernels agree with the reference on this device
            "forward": lambda: _max_relative_error(kernels.combine(weight, words, alpha), reference.combine(weight, words, alpha)),
            "grad_alpha": lambda: _max_relative_error(kernels.combine_grad_alpha(grad, weight, words, alpha),
                                                      reference.combine_grad_alpha(grad, weight, words, alpha)),
        }
        for op, (floor_bytes, impls) in ops.items():
            for impl, fn in impls.items():
                row = dict(bench="combine", op=op, layer=layer, shape=list(shape), masks=t,
                           alpha="per_channel" if per_channel else "per_layer", dtype="float32", impl=impl,
                           floor_bytes=floor_bytes)
                if stacked is None and impl.startswith("dense"):
                    rows.append(dict(row, error="out of memory (stacked masks)"))
                    continue
                def more(ms, fn=fn, impl=impl, op=op, floor_bytes=floor_bytes):
                    extra = dict(gbps=floor_bytes / ms / 1e6, peak_mb=peak_memory_mb(setup, fn))
                    if peak_gbps:
                        extra["peak_fraction"] = extra["gbps"] / peak_gbps
                    if impl == "triton":
                        extra["max_rel_error_vs_reference"] = checks[op]()
                    return extra

                rows.append(timed_row(setup, fn, row, more))
        del stacked
    return rows
