"""popup (edge-popup top-k mask) on 1 M, 2.4 M and 25 M scores: Triton radix select vs sorting and torch's selections.

Implementations, side by side on the same scores (|S|, fp32):

    triton_mask   impresslearn.kernels.popup_mask (float mask)
    triton_pack   impresslearn.kernels.popup_pack (packed bits, no dense mask)
    sort          SupSup's GetSubnet: sort everything, zero the bottom, one the top
    topk          torch.topk(k) then a scatter of ones
    kthvalue      torch.kthvalue threshold then a comparison (not exact on ties)
    reference     impresslearn.reference.popup_mask (stable sort: exact, ties by index)
"""

from __future__ import annotations

import itertools

import torch
from tqdm import tqdm

from impresslearn import reference
from triton_timing import Setup, measure_ms

SIZES = {"1M": (1000, 1000), "2.4M": (512, 512, 3, 3), "25M": (5000, 5000)}
DENSITIES = (0.1, 0.5)
SMOKE_SIZES = {"tiny": (37, 29)}


def sort_select(scores: torch.Tensor, k: int) -> torch.Tensor:
    out = torch.empty_like(scores)
    flat = out.view(-1)
    idx = scores.flatten().sort().indices
    cut = scores.numel() - k
    flat[idx[:cut]] = 0
    flat[idx[cut:]] = 1
    return out


def topk_select(scores: torch.Tensor, k: int) -> torch.Tensor:
    out = torch.zeros(scores.numel(), device=scores.device, dtype=scores.dtype)
    out[torch.topk(scores.flatten(), k, sorted=False).indices] = 1
    return out.view_as(scores)


def kthvalue_select(scores: torch.Tensor, k: int) -> torch.Tensor:
    threshold = torch.kthvalue(scores.flatten(), scores.numel() - k + 1).values
    return (scores >= threshold).to(scores.dtype)


def run(setup: Setup, peak_gbps=None) -> list[dict]:
    from impresslearn import kernels

    sizes = SMOKE_SIZES if setup.smoke else SIZES
    gen = torch.Generator().manual_seed(0)
    rows = []
    for (name, shape), density in tqdm(list(itertools.product(sizes.items(), DENSITIES)), desc="popup", leave=False):
        scores = torch.randn(shape, generator=gen).abs().to(setup.device)
        n = scores.numel()
        k = n - int((1 - density) * n)
        impls = {
            "triton_mask": lambda: kernels.popup_mask(scores, k),
            "triton_pack": lambda: kernels.popup_pack(scores, k),
            "sort": lambda: sort_select(scores, k),
            "topk": lambda: topk_select(scores, k),
            "kthvalue": lambda: kthvalue_select(scores, k),
            "reference": lambda: reference.popup_mask(scores, k),
        }
        expected = reference.popup_mask(scores, k)
        checks = {"triton_mask": lambda: torch.equal(kernels.popup_mask(scores, k), expected),
                  "triton_pack": lambda: torch.equal(kernels.popup_pack(scores, k), reference.popup_pack(scores, k))}
        for impl, fn in impls.items():
            row = dict(bench="popup", size=name, shape=list(shape), numel=n, density=density, k=k, dtype="float32",
                       impl=impl, ms=measure_ms(setup, fn))
            if impl in checks:  # the benchmark also shows the kernel is exact on this device
                row["matches_reference"] = bool(checks[impl]())
            rows.append(row)
        del expected
    return rows
