"""popup (edge-popup top-k mask) on 1 M, 2.4 M and 25 M scores: Triton radix select vs sorting and torch's selections.

Implementations, side by side on the same scores (|S|, fp32):

    triton_mask   impresslearn.kernels.popup_mask (float mask)
    triton_pack   impresslearn.kernels.popup_pack (packed bits, no dense mask)
    sort          SupSup's GetSubnet: sort everything, zero the bottom, one the top
    topk          torch.topk(k) then a scatter of ones
    kthvalue      torch.kthvalue threshold then a comparison (not exact on ties)
    reference     impresslearn.reference.popup_mask (stable sort: exact, ties by index)

The three torch selections are impresslearn.dense's; the sizes are bench_cases.py's.
"""

from __future__ import annotations

import itertools

import torch
from bench_cases import POPUP_SHAPES, QUICK_POPUP_SHAPES
from tqdm import tqdm
from triton_timing import Setup, measure_ms

from impresslearn import dense, ops, reference

DENSITIES = (0.1, 0.5)


def run(setup: Setup, peak_gbps=None) -> list[dict]:
    from impresslearn import kernels

    sizes = QUICK_POPUP_SHAPES if setup.smoke else POPUP_SHAPES
    gen = torch.Generator().manual_seed(0)
    rows = []
    for (name, shape), density in tqdm(list(itertools.product(sizes.items(), DENSITIES)), desc="popup", leave=False):
        scores = torch.randn(shape, generator=gen).abs().to(setup.device)
        n = scores.numel()
        k = ops.popup_k(n, density)
        impls = {
            "triton_mask": lambda: kernels.popup_mask(scores, k),
            "triton_pack": lambda: kernels.popup_pack(scores, k),
            "sort": lambda: dense.select_sort(scores, k),
            "topk": lambda: dense.select_topk(scores, k),
            "kthvalue": lambda: dense.select_kthvalue(scores, k),
            "reference": lambda: reference.popup_mask(scores, k),
        }
        expected = reference.popup_mask(scores, k)
        checks = {
            "triton_mask": lambda: torch.equal(kernels.popup_mask(scores, k), expected),
            "triton_pack": lambda: torch.equal(kernels.popup_pack(scores, k), reference.popup_pack(scores, k)),
        }
        for impl, fn in impls.items():
            row = dict(
                bench="popup",
                size=name,
                shape=list(shape),
                numel=n,
                density=density,
                k=k,
                dtype="float32",
                impl=impl,
                ms=measure_ms(setup, fn),
            )
            if impl in checks:  # the benchmark also shows the kernel is exact on this device
                row["matches_reference"] = bool(checks[impl]())
            rows.append(row)
        expected = None
    return rows
