"""Shared test inputs, independent oracles (dense formulas on the original bool masks), and
the backends the kernel tests run on.

The kernel tests (tests/kernels/test_<primitive>.py) draw their inputs from here and run each
case on every backend, so that every backend meets the same odd shapes, mask counts and dtypes.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pytest
import torch

import impresslearn

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
    """Σ_t alpha_t M_t in float64, broadcasting per-channel alpha over each row. The sum runs over
    the set bits only: a bit of 0 contributes exactly 0, even for a NaN or infinite alpha_t
    (docs/design.md §5.4; a product with the dense mask would make that 0 · NaN = NaN)."""
    m = masks.bool()
    a = alpha.double().reshape(*alpha.shape, *([1] * (m.dim() - alpha.dim())))
    return torch.where(m, a, 0.0).sum(0)


def combine_oracle(weight, masks, alpha):
    return weight.double() * coefficients_oracle(masks, alpha)


def grad_alpha_oracle(grad, weight, masks, alpha):
    """Σ grad ⊙ weight over the set bits of each mask (per row for per-channel alpha), in float64."""
    prod = torch.where(masks.bool(), grad.double() * weight.double(), 0.0)  # [T, *shape]
    if alpha.dim() == 1:
        return prod.reshape(prod.shape[0], -1).sum(1)
    return prod.reshape(prod.shape[0], prod.shape[1], -1).sum(2)


# Values whose sums and products in these tests are exact in fp32 (multiples of 1/4, small), so
# that every backend must give the same bits whatever its order of summation: what lets the
# non-finite tests compare exactly, NaN and the signs of infinities included.
DYADIC = torch.tensor([-2.0, -1.5, -1.0, -0.5, 0.5, 1.0, 1.5, 2.0])
NON_FINITE = torch.tensor([float("nan"), float("inf"), -float("inf")])


def dyadic(shape, g: torch.Generator, zeros: bool = False) -> torch.Tensor:
    values = torch.cat([DYADIC, torch.zeros(2)]) if zeros else DYADIC
    return values[torch.randint(0, len(values), shape, generator=g)]


def sprinkle_non_finite(x: torch.Tensor, fraction: float, g: torch.Generator) -> torch.Tensor:
    """`x` with about `fraction` of its entries (at least one) NaN, +inf or -inf."""
    flat = x.clone().reshape(-1)
    n = max(1, round(fraction * flat.numel()))
    where = torch.randperm(flat.numel(), generator=g)[:n]
    flat[where] = NON_FINITE[torch.randint(0, len(NON_FINITE), (n,), generator=g)]
    return flat.reshape(x.shape)


def non_finite_inputs(
    shape,
    t,
    *,
    per_channel=False,
    dtype=torch.float32,
    seed=0,
    alpha_fraction=0.0,
    weight_fraction=0.0,
    density=0.4,
    device="cpu",
):
    """(weight, bool masks on the CPU, words, alpha) with dyadic values, some of alpha and of the
    weight made NaN / ±inf, masks of the given density (so that many weights have bits of 0 for a
    non-finite mask: where a masked sum and a product with the dense mask differ)."""
    from impresslearn import pack_masks

    g = torch.Generator().manual_seed(seed)
    masks = torch.rand((t, *shape), generator=g) < density
    weight = dyadic(shape, g, zeros=True)
    alpha = dyadic((t, shape[0]) if per_channel else (t,), g)
    if alpha_fraction:
        alpha = sprinkle_non_finite(alpha, alpha_fraction, g)
    if weight_fraction:
        weight = sprinkle_non_finite(weight, weight_fraction, g)
    return (weight.to(dtype).to(device), masks, pack_masks(masks).words.to(device), alpha.to(dtype).to(device))


# Triton's interpreter computes with numpy, which warns about every NaN it makes on purpose here.
QUIET_NAN = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


def assert_same_values(out: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal in `out`'s dtype, bit for bit up to the NaN payload: NaN where expected is NaN,
    infinities of the same sign, finite values exactly (the exact float64 value rounded once)."""
    assert out.shape == expected.shape, (tuple(out.shape), tuple(expected.shape))
    torch.testing.assert_close(out.cpu(), expected.cpu().to(out.dtype), rtol=0, atol=0, equal_nan=True)


def popup_oracle(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k by value with ties toward the lower flat index, via Python's sort on (−value, index)."""
    vals = scores.reshape(-1).double().tolist()
    order = sorted(range(len(vals)), key=lambda i: (-vals[i], i))
    out = torch.zeros(len(vals), dtype=scores.dtype)
    out[order[:k]] = 1
    return out.reshape(scores.shape).to(scores.device)


def popup_k_oracle(numel: int, density: float) -> int:
    return numel - math.floor((1 - density) * numel)


def pack_oracle(bits: torch.Tensor) -> torch.Tensor:
    """int32 words `[T, rows, ceil(cols / 32)]`: bit j of word w is column 32 w + j (nonzero is 1)."""
    t, rows, cols = bits.shape
    nw = (cols + 31) // 32
    padded = torch.zeros(t, rows, nw * 32, dtype=torch.int64)
    padded[..., :cols] = (bits != 0).to(torch.int64)
    words = (padded.reshape(t, rows, nw, 32) << torch.arange(32)).sum(-1)
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)  # two's complement


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


def packed_inputs(shape, t, dtype=torch.float32, per_channel=False, seed=0, device="cpu", density=0.4):
    """make_combine_inputs with the masks packed: (weight, bool masks on the CPU, words, alpha)."""
    from impresslearn import pack_masks

    weight, masks, alpha = make_combine_inputs(shape, t, dtype=dtype, per_channel=per_channel, seed=seed, density=density)
    return weight.to(device), masks, pack_masks(masks).words.to(device), alpha.to(device)


# --------------------------------------------------------------------------- the backends under test

BACKENDS = ("reference", "native", "triton")


def needs(backend: str) -> list:
    """The marks of a test of one backend: its name as a marker (`-m "not native"`), and a skip
    where it is unavailable, with the reason."""
    available = backend in impresslearn.available_backends()
    reason = None if available else impresslearn.backends.why_unavailable(backend)
    return [getattr(pytest.mark, backend), pytest.mark.skipif(not available, reason=f"{backend} backend unavailable: {reason}")]


def only(backend: str):
    """Decorator: a test of this backend alone (marked and skipped as `needs` says)."""

    def mark(fn):
        for m in needs(backend):
            fn = m(fn)
        return fn

    return mark


requires_native = only("native")


def device_of(backend: str) -> str:
    """Where a backend's tests put their tensors: Triton on DEVICE (interpreted on CPU tensors
    without CUDA), the others on the CPU."""
    return DEVICE if backend == "triton" else "cpu"


def runnable_variants() -> list[str]:
    """The native kernel variants (avx512, avx2, generic, lut) this CPU can run."""
    if "native" not in impresslearn.available_backends():
        return []
    from impresslearn import native

    out = []
    for name in ("generic", "lut", "avx2", "avx512"):
        try:
            previous = native.set_variant(name)
        except RuntimeError:  # this CPU lacks the instructions
            continue
        native.set_variant(previous)
        out.append(name)
    return out


VARIANTS = runnable_variants()


@contextlib.contextmanager
def variant(name: str):
    """Force one native kernel variant inside the block."""
    from impresslearn import native

    previous = native.set_variant(name)
    try:
        yield
    finally:
        native.set_variant(previous)


# Native shapes that reach the kernels' internal boundaries (on top of SHAPES): 10 words per row
# (an 8-word SIMD block and a remainder), 66 words (two segments of one row), and enough rows
# that the parallel loops split.
EXTRA_SHAPES = [(5, 300), (3, 2085), (40, 7, 3, 3)]

# Triton launcher options that force one path: the coefficient paths of combine (shift-and-add,
# lookup tables, per channel too), and the fused GEMM or combine + GEMM of impress_linear at any batch.
_GEMM_PATHS = {"fused": dict(fused_max_batch=10**6), "combine_gemm": dict(fused_max_batch=0)}
TRITON_VARIANTS = {
    "combine": {"shift_add": dict(lut_min_masks=10**9), "lut": dict(lut_min_masks=1, lut_per_channel_min_cols=1)},
    "impress_linear": _GEMM_PATHS,
    "impress_linear_grad_input": _GEMM_PATHS,
}


@dataclass(frozen=True)
class Flavour:
    """A backend, or one of its kernel variants forced: a native inner loop (VARIANTS) or a Triton
    path (TRITON_VARIANTS). Calling it runs a primitive, named and called as in impresslearn.reference."""

    backend: str
    variant: str | None = None

    @property
    def id(self) -> str:
        return self.backend if self.variant is None else f"{self.backend}-{self.variant}"

    @property
    def device(self) -> str:
        return device_of(self.backend)

    def __call__(self, primitive: str, *args, **kwargs):
        """Run `primitive` as this backend does: its kernel, or the composition its declaration
        names (docs/design.md §5.1). A primitive the backend has no kernel for fails here, as
        it fails in the ops; a portable one is the reference's own code, so a test of it on
        another backend would compare the reference with itself: such a test is refused (leave
        that backend out of its grid)."""
        from impresslearn import reference
        from impresslearn.primitives import resolve

        module = impresslearn.backends.module(self.backend)
        found = resolve(module.KERNELS, primitive, reference.KERNELS, self.backend)
        if found.how == "portable":
            raise ValueError(
                f"{self.backend} has no {primitive} kernel (declared portable): testing it there would "
                "compare the reference with itself; leave the backend out of the test's grid"
            )
        fn = found.fn
        if self.backend == "triton" and self.variant is not None:
            fn = functools.partial(fn, **TRITON_VARIANTS[primitive][self.variant])
        if self.backend == "native" and self.variant is not None:
            with variant(self.variant):
                return fn(*args, **kwargs)
        return fn(*args, **kwargs)


def flavours(*, native_variants: bool = False, triton_variants: Sequence[str] = ()) -> list[Flavour]:
    """Every backend (listed where unavailable too: its tests are skipped), optionally split
    into the native kernel variants this CPU runs and the given Triton paths."""
    out = [Flavour("reference")]
    out += [Flavour("native", v) for v in VARIANTS] if native_variants and VARIANTS else [Flavour("native")]
    out += [Flavour("triton", v) for v in triton_variants] or [Flavour("triton")]
    return out


def case_id(value) -> str:
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    if isinstance(value, tuple) and all(isinstance(v, int) for v in value):
        return "x".join(map(str, value))
    return str(value)


def grid(
    all_flavours: Iterable[Flavour], cases: Iterable[tuple] = ((),), triton_cases: Iterable[tuple] | None = None, ids=None
) -> list:
    """pytest.params of (flavour, *case) for each flavour and each of its cases (tuples of values):
    `cases`, or `triton_cases` for Triton (which the interpreter runs on fewer, smaller cases).
    `ids(*case)` names a case (default: its values joined by "-")."""
    cases, triton_cases = list(cases), None if triton_cases is None else list(triton_cases)
    out = []
    for f in all_flavours:
        for case in triton_cases if f.backend == "triton" and triton_cases is not None else cases:
            name = ids(*case) if ids else "-".join(case_id(v) for v in case)
            out.append(pytest.param(f, *case, marks=needs(f.backend), id="-".join(filter(None, [f.id, name]))))
    return out


def backend_grid(
    cases: Iterable[tuple] = ((),), triton_cases: Iterable[tuple] | None = None, backends=BACKENDS, ids=None
) -> list:
    """grid() over the plain backends (no variants) among `backends`."""
    return grid([f for f in flavours() if f.backend in backends], cases, triton_cases, ids)
