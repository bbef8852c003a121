"""combine and grad-alpha on ResNet-50 layer shapes: Triton vs dense baselines vs the reference.

Implementations, side by side on the same tensors:

    triton        impresslearn.kernels (packed words, one pass), default coefficient path
    triton_lut, triton_shift_add   the same kernel with each coefficient path forced
    reference     impresslearn.reference (unpacks the masks)
    dense_supsup  masks kept as stacked float tensors, `(alpha * stacked).sum(0) * weight`, and
                  for alpha's gradient what autograd computes through it, `stacked ⊙ (G ⊙ W)`
                  summed per mask (what SupSup-style code does): impresslearn.dense
    dense_matvec  the best dense alternative: `alpha @ stacked` as one matrix-vector product
                  (and `stacked @ (G ⊙ W)` for the gradient)

Shapes, mask counts, the coefficient paths and the random packed masks: bench_cases.py.

`floor_bytes` is what a one-pass kernel must move (W, T bits per weight and W_eff for combine;
G, W and the bits for grad-alpha); `gbps` = floor_bytes / time for every implementation, and
`peak_fraction` divides it by the GPU's peak bandwidth.
"""

from __future__ import annotations

import itertools

import torch
from bench_cases import QUICK_MASK_COUNTS, QUICK_SHAPE, RESNET50_MASK_COUNTS, RESNET50_SHAPES, TRITON_COMBINE_PATHS, random_packed
from tqdm import tqdm
from triton_timing import Setup, out_of_memory, peak_memory_mb, timed_row

from impresslearn import dense, reference

SMOKE_SHAPES = {"tiny": QUICK_SHAPE}


def _inputs(shape, t, per_channel, device, gen):
    weight = torch.randn(shape, generator=gen).to(device)
    packed = random_packed(t, shape, seed=int(torch.randint(0, 2**31, (1,), generator=gen)), device=device)
    alpha = torch.rand((t, shape[0]) if per_channel else (t,), generator=gen).to(device)
    return weight, packed, alpha


def _max_relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.double() - ref.double()).abs().max() / ref.double().abs().max().clamp_min(1e-30))


def run(setup: Setup, peak_gbps) -> list[dict]:
    from impresslearn import kernels

    shapes = SMOKE_SHAPES if setup.smoke else RESNET50_SHAPES
    counts = QUICK_MASK_COUNTS if setup.smoke else RESNET50_MASK_COUNTS
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
            "forward": (
                2 * w_bytes + words.numel() * 4,
                {
                    "triton": lambda: kernels.combine(weight, words, alpha),
                    # both coefficient paths forced, to choose the default by measurement
                    "triton_lut": lambda: kernels.combine(weight, words, alpha, **TRITON_COMBINE_PATHS["lut"]),
                    "triton_shift_add": lambda: kernels.combine(weight, words, alpha, **TRITON_COMBINE_PATHS["shift_add"]),
                    "reference": lambda: reference.combine(weight, words, alpha),
                    "dense_supsup": lambda: dense.combine_dense(weight, stacked, alpha),
                    "dense_matvec": lambda: dense.combine_matvec(weight, stacked, alpha),
                },
            ),
            "grad_alpha": (
                2 * w_bytes + words.numel() * 4,
                {
                    "triton": lambda: kernels.combine_grad_alpha(grad, weight, words, alpha),
                    "reference": lambda: reference.combine_grad_alpha(grad, weight, words, alpha),
                    "dense_supsup": lambda: dense.combine_dense_grad_alpha(grad, weight, stacked, alpha),
                    "dense_matvec": lambda: dense.combine_matvec_grad_alpha(grad, weight, stacked, alpha),
                },
            ),
        }
        checks = {  # the benchmark also shows the kernels agree with the reference on this device
            "forward": lambda: _max_relative_error(
                kernels.combine(weight, words, alpha), reference.combine(weight, words, alpha)
            ),
            "grad_alpha": lambda: _max_relative_error(
                kernels.combine_grad_alpha(grad, weight, words, alpha), reference.combine_grad_alpha(grad, weight, words, alpha)
            ),
        }
        for op, (floor_bytes, impls) in ops.items():
            for impl, fn in impls.items():
                row = dict(
                    bench="combine",
                    op=op,
                    layer=layer,
                    shape=list(shape),
                    masks=t,
                    alpha="per_channel" if per_channel else "per_layer",
                    dtype="float32",
                    impl=impl,
                    floor_bytes=floor_bytes,
                )
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
        stacked = None  # the next case's dense stack is allocated without this one alive
    return rows
