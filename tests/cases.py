"""Shared test inputs and independent oracles (dense formulas on the original bool masks).

Backend tests (test_<primitive>_<backend>.py) draw their inputs from here so that every
backend meets the same odd shapes, mask counts and dtypes.
"""

from __future__ import annotations

import math

import torch

# Odd weight shapes: rows and cols not multiples of 32 or of any block size; 1-D to 4-D.
SHAPES = [(1, 1), (3, 5), (7, 33), (13, 95), (5, 3, 3, 3), (6, 4, 1, 5), (17,)]
MASK_COUNTS = [1, 7, 8, 9, 33, 70]
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]

# Tolerances for results computed in fp32 (fp64 for fp64) and rounded to the output dtype.
TOL = {
    torch.float64: dict(rtol=1e-10, atol=1e-10),
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.float16: dict(rtol=2e-3, atol=2e-3),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2),
}


def make_combine_inputs(shape, t, dtype=torch.float32, per_channel=False, device="cpu", seed=0, density=0.4):
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(shape, generator=g).to(dtype)
    masks = torch.rand((t, *shape), generator=g) < density
    alpha_shape = (t, shape[0]) if per_channel else (t,)
    alpha = (torch.rand(alpha_shape, generator=g) * 2 - 1) / math.sqrt(t)
    return weight.to(device), masks.to(device), alpha.to(device)


def coefficients_oracle(masks: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Σ_t alpha_t M_t in float64, broadcasting per-channel alpha over each row."""
    m = masks.double()
    a = alpha.double().reshape(*alpha.shape, *([1] * (m.dim() - alpha.dim())))
    return (a * m).sum(0)


def combine_oracle(weight, masks, alpha):
    return weight.double() * coefficients_oracle(masks, alpha)


def grad_alpha_oracle(grad, weight, masks, alpha):
    prod = grad.double() * weight.double() * masks.double()  # [T, *shape]
    if alpha.dim() == 1:
        return prod.reshape(prod.shape[0], -1).sum(1)
    return prod.reshape(prod.shape[0], prod.shape[1], -1).sum(2)


def popup_oracle(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k by value with ties toward the lower flat index, via Python's sort on (−value, index)."""
    vals = scores.reshape(-1).double().tolist()
    order = sorted(range(len(vals)), key=lambda i: (-vals[i], i))
    out = torch.zeros(len(vals), dtype=scores.dtype)
    out[order[:k]] = 1
    return out.reshape(scores.shape).to(scores.device)


def popup_k_oracle(numel: int, density: float) -> int:
    return numel - math.floor((1 - density) * numel)


# --------------------------------------------------------------------------- comparing backends

# Where backend tests run: CUDA when present, else CPU tensors (the Triton tests then run in
# Triton's interpreter, which tests/conftest.py switches on).
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def assert_within_torch_error(out, ref, exact, dtype, factor=2.0):
    """`out` is as close to the float64 `exact` result as the same-dtype reference `ref` is.

    The FlashAttention rule: |out - exact| <= factor * max|ref - exact| + atol(dtype), elementwise
    against the worst error of the reference, so a tolerance follows the dtype's own rounding.
    """
    exact = exact.double()
    ref_err = (ref.double() - exact).abs().max().item()
    atol = TOL[dtype]["atol"] * max(1.0, exact.abs().max().item())
    err = (out.double() - exact).abs().max().item()
    assert err <= factor * ref_err + atol, f"error {err:.3g} > {factor} x reference error {ref_err:.3g} + {atol:.3g}"
