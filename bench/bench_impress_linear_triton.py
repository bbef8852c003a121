"""impress_linear (forward, input gradient, forward+backward) and an ImpressLearn conv training step.

Implementations, side by side on the same tensors:

    triton_fused          the fused GEMM/GEMV that forms W_eff tiles from the packed words
                          (forced at every batch, to see where it stops paying)
    triton_combine_gemm   Triton combine, then the dense GEMM (the path above the threshold)
    triton                what ops.impress_linear / impress_conv2d run under backend("triton")
    floor                 F.linear / F.conv2d with a precomputed W_eff (grads for x and W_eff)
    dense                 masks as stacked float tensors: combine_dense + F.linear, autograd
    reference             ops under backend("reference")

`fwd+bwd` computes the gradients of x and alpha (of x and W_eff for the floor). Layer shapes,
batches, the forced paths and the random packed masks: bench_cases.py.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from bench_cases import LINEAR_BATCHES, LINEAR_SHAPES, QUICK_LINEAR, TRITON_LINEAR_PATHS, random_packed
from tqdm import tqdm
from triton_timing import Setup, timed_row

import impresslearn
from impresslearn import dense, ops

MASK_COUNTS = (8, 75)
DTYPES = (torch.float16, torch.float32)
# ResNet-50 3x3 convs at batch 32: (weight shape, input shape).
CONV_STEPS = {"layer3.conv2": ((256, 256, 3, 3), (32, 256, 14, 14)), "layer4.conv2": ((512, 512, 3, 3), (32, 512, 7, 7))}

SMOKE_LINEAR_SHAPES = {"tiny": QUICK_LINEAR}
SMOKE_BATCHES = (1, 70)
SMOKE_MASK_COUNTS = (9,)
SMOKE_DTYPES = (torch.float32,)
SMOKE_CONV_STEPS = {"tiny": ((4, 3, 3, 3), (2, 3, 6, 6))}


def _grads(out, inputs):
    return torch.autograd.grad(out, inputs, torch.ones_like(out))


def _linear_impls(x, weight, packed, alpha, stacked):
    from impresslearn import kernels

    words = packed.words
    w_eff = kernels.combine(weight, words, alpha)
    g = torch.randn(x.shape[0], weight.shape[0], device=x.device, dtype=x.dtype)
    xr, ar, wr = x.detach().requires_grad_(), alpha.detach().requires_grad_(), w_eff.detach().requires_grad_()

    def through_ops(name):
        def step():
            with impresslearn.backend(name):
                return _grads(ops.impress_linear(xr, weight, packed, ar), (xr, ar))

        return step

    return {
        "forward": {
            "triton_fused": lambda: kernels.impress_linear(x, weight, words, alpha, None, **TRITON_LINEAR_PATHS["fused"]),
            "triton_combine_gemm": lambda: kernels.impress_linear(
                x, weight, words, alpha, None, **TRITON_LINEAR_PATHS["combine_gemm"]
            ),
            "floor": lambda: F.linear(x, w_eff),
            "dense": lambda: F.linear(x, dense.combine_dense(weight, stacked, alpha)),
        },
        "grad_input": {
            "triton_fused": lambda: kernels.impress_linear_grad_input(g, weight, words, alpha, **TRITON_LINEAR_PATHS["fused"]),
            "triton_combine_gemm": lambda: kernels.impress_linear_grad_input(
                g, weight, words, alpha, **TRITON_LINEAR_PATHS["combine_gemm"]
            ),
            "floor": lambda: g @ w_eff,
        },
        "fwd+bwd": {
            "triton": through_ops("triton"),
            "floor": lambda: _grads(F.linear(xr, wr), (xr, wr)),
            "dense": lambda: _grads(F.linear(xr, dense.combine_dense(weight, stacked, ar)), (xr, ar)),
            "reference": through_ops("reference"),
        },
    }


def _conv_impls(x, weight, packed, alpha, stacked):
    from impresslearn import kernels

    w_eff = kernels.combine(weight, packed.words, alpha)
    xr, ar, wr = x.detach().requires_grad_(), alpha.detach().requires_grad_(), w_eff.detach().requires_grad_()

    def through_ops(name):
        def step():
            with impresslearn.backend(name):
                return _grads(ops.impress_conv2d(xr, weight, packed, ar, None, 1, 1), (xr, ar))

        return step

    return {
        "fwd+bwd": {
            "triton": through_ops("triton"),
            "floor": lambda: _grads(F.conv2d(xr, wr, None, 1, 1), (xr, wr)),
            "dense": lambda: _grads(F.conv2d(xr, dense.combine_dense(weight, stacked, ar), None, 1, 1), (xr, ar)),
            "reference": through_ops("reference"),
        }
    }


def _time_all(setup, impls_by_op, base_row, rows):
    for op, impls in impls_by_op.items():
        for impl, fn in impls.items():
            rows.append(timed_row(setup, fn, dict(base_row, op=op, impl=impl)))


def _setup_layer(shape, t, dtype, device, gen):
    weight = torch.randn(shape, generator=gen).to(dtype).to(device)
    packed = random_packed(t, shape, seed=int(torch.randint(0, 2**31, (1,), generator=gen)), device=device)
    alpha = torch.rand(t, generator=gen).to(device)
    return weight, packed, alpha, dense.stack_masks(packed, dtype)


def run(setup: Setup, peak_gbps=None) -> list[dict]:
    shapes = SMOKE_LINEAR_SHAPES if setup.smoke else LINEAR_SHAPES
    batches = SMOKE_BATCHES if setup.smoke else LINEAR_BATCHES
    counts = SMOKE_MASK_COUNTS if setup.smoke else MASK_COUNTS
    dtypes = SMOKE_DTYPES if setup.smoke else DTYPES
    convs = SMOKE_CONV_STEPS if setup.smoke else CONV_STEPS
    gen = torch.Generator().manual_seed(0)
    rows = []
    cases = list(itertools.product(shapes.items(), counts, dtypes))
    for (layer, shape), t, dtype in tqdm(cases, desc="impress_linear", leave=False):
        weight, packed, alpha, stacked = _setup_layer(shape, t, dtype, setup.device, gen)
        for batch in batches:
            x = torch.randn(batch, shape[1], generator=gen).to(dtype).to(setup.device)
            base = dict(bench="impress_linear", layer=layer, shape=list(shape), masks=t, batch=batch, dtype=str(dtype)[6:])
            _time_all(setup, _linear_impls(x, weight, packed, alpha, stacked), base, rows)
        del stacked
    for (layer, (wshape, xshape)), t in tqdm(list(itertools.product(convs.items(), counts)), desc="conv step", leave=False):
        weight, packed, alpha, stacked = _setup_layer(wshape, t, torch.float32, setup.device, gen)
        x = torch.randn(xshape, generator=gen).to(setup.device)
        base = dict(bench="conv_step", layer=layer, shape=list(wshape), masks=t, batch=xshape[0], dtype="float32")
        _time_all(setup, _conv_impls(x, weight, packed, alpha, stacked), base, rows)
        del stacked
    return rows
