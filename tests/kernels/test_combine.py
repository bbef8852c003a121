"""combine and combine_grad_alpha on every backend, against the float64 oracles of tests/cases.py.

Every backend meets the same cases: odd shapes (1-D to 4-D, rows and columns not multiples of 32
or of a block), T from 1 to 70 (and 256, the lookup tables' case), per-layer and per-channel
alpha, every float dtype. Each backend runs in each of its kernel variants: the native inner
loops this CPU runs (avx512, avx2, generic, lut) and Triton's coefficient paths (shift_add,
lut). Triton without CUDA runs in its interpreter on CPU tensors, on fewer and smaller cases.
impress_conv2d is combine followed by the framework's convolution: its checks are here too.
The edge cases of docs/design.md §5.4 close the file: NaN / ±inf alpha, grad and weight (exact,
with dyadic values), and what the op layer refuses for every backend (0-d and empty weights, T = 0).
"""

import itertools

import pytest
import torch
from cases import (
    DEVICE,
    DTYPES,
    EXTRA_SHAPES,
    MASK_COUNTS,
    QUIET_NAN,
    SHAPES,
    TOL,
    Flavour,
    assert_same_values,
    assert_within_torch_error,
    backend_grid,
    case_id,
    coefficients_oracle,
    combine_oracle,
    dyadic,
    flavours,
    grad_alpha_oracle,
    grid,
    non_finite_inputs,
    only,
    packed_inputs,
    sprinkle_non_finite,
)

import impresslearn
from impresslearn import ops, reference

COMBINE = flavours(native_variants=True, triton_variants=("shift_add", "lut"))
GRAD_ALPHA = flavours(native_variants=True)
ALPHA = pytest.mark.parametrize("per_channel", [False, True], ids=["per_layer", "per_channel"])


def pairs(shapes, counts):
    return [(s, t) for s in shapes for t in counts]


def shape_t(shape, t):
    return f"{case_id(shape)}-T{t}"


# Many groups of 8 masks (what the lookup tables are for), a partial last group for 70.
MANY_MASKS = [((3, 37), 70), ((3, 37), 256)]
ALL_CASES = pairs(SHAPES + EXTRA_SHAPES, MASK_COUNTS) + MANY_MASKS
# The interpreter: every small mask count on a few shapes, the costlier counts on fewer.
TRITON_COMBINE = pairs([(3, 5), (13, 95), (5, 3, 3, 3), (17,)], [1, 7, 8, 9]) + pairs([(13, 95), (5, 3, 3, 3)], [33]) + MANY_MASKS
TRITON_GRAD_ALPHA = pairs([(1, 1), (7, 33), (13, 95), (6, 4, 1, 5)], [1, 7, 8, 9]) + pairs([(13, 95)], [33, 70])


def inputs(flavour: Flavour, shape, t, **kw):
    return packed_inputs(shape, t, device=flavour.device, **kw)


@ALPHA
@pytest.mark.parametrize("flavour, shape, t", grid(COMBINE, ALL_CASES, TRITON_COMBINE, ids=shape_t))
def test_combine_matches_oracle(flavour, shape, t, per_channel):
    weight, masks, words, alpha = inputs(flavour, shape, t, per_channel=per_channel, seed=t)
    out = flavour("combine", weight, words, alpha)
    assert out.shape == weight.shape and out.dtype == weight.dtype and out.device == weight.device
    torch.testing.assert_close(out.cpu().double(), combine_oracle(weight.cpu(), masks, alpha.cpu()), **TOL[torch.float32])
    if flavour.backend != "reference":
        torch.testing.assert_close(out, reference.combine(weight, words, alpha), **TOL[torch.float32])


@ALPHA
@pytest.mark.parametrize("flavour, shape, t", grid(GRAD_ALPHA, ALL_CASES, TRITON_GRAD_ALPHA, ids=shape_t))
def test_grad_alpha_matches_oracle(flavour, shape, t, per_channel):
    weight, masks, words, alpha = inputs(flavour, shape, t, per_channel=per_channel, seed=t + 1)
    grad = torch.randn(shape, generator=torch.Generator().manual_seed(t)).to(flavour.device)
    out = flavour("combine_grad_alpha", grad, weight, words, alpha)
    assert out.shape == alpha.shape and out.dtype == alpha.dtype
    exact = grad_alpha_oracle(grad.cpu(), weight.cpu(), masks, alpha.cpu())
    torch.testing.assert_close(out.cpu().double(), exact, rtol=1e-5, atol=1e-4)
    if flavour.backend != "reference":
        torch.testing.assert_close(out, reference.combine_grad_alpha(grad, weight, words, alpha), rtol=1e-5, atol=1e-4)


# (weight dtype, alpha dtype): alpha in the weight's dtype, fp32 alpha on a low-precision or fp64
# weight, and fp64 alpha on an fp32 weight (combine in fp32, the alpha gradient in fp64).
DTYPE_PAIRS = [(d, d) for d in DTYPES] + [
    (torch.float16, torch.float32),
    (torch.bfloat16, torch.float32),
    (torch.float64, torch.float32),
    (torch.float32, torch.float64),
]
# 10 words per row for the native SIMD blocks; the interpreter takes a smaller case.
DTYPE_CASE, TRITON_DTYPE_CASE = ((13, 300), 33), ((13, 95), 9)


def _grad_tol(dtype):
    # Sums of thousands of products, added in another order than the reference's einsum.
    return dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else {**TOL[dtype], "atol": max(TOL[dtype]["atol"], 1e-4)}


@ALPHA
@pytest.mark.parametrize(
    "flavour, dtype, alpha_dtype", grid(COMBINE, DTYPE_PAIRS, ids=lambda d, a: f"{case_id(d)}-alpha_{case_id(a)}")
)
def test_dtypes(flavour, dtype, alpha_dtype, per_channel):
    """Output in weight's dtype (grad-alpha in alpha's), fp32 accumulation (fp64 when either is
    fp64) and one rounding, as the reference: as close to the exact result as the reference is."""
    shape, t = TRITON_DTYPE_CASE if flavour.backend == "triton" else DTYPE_CASE
    weight, masks, words, alpha = inputs(flavour, shape, t, dtype=dtype, per_channel=per_channel)
    alpha = alpha.to(alpha_dtype)
    grad = torch.randn(shape, generator=torch.Generator().manual_seed(5)).to(dtype).to(flavour.device)
    out = flavour("combine", weight, words, alpha)
    assert out.dtype == dtype
    exact = combine_oracle(weight.cpu(), masks, alpha.cpu())
    torch.testing.assert_close(out.cpu().double(), exact, **TOL[dtype])
    ref = reference.combine(weight, words, alpha)
    if flavour.backend != "reference":
        torch.testing.assert_close(out, ref, **TOL[dtype])
        assert_within_torch_error(out.cpu(), ref.cpu(), exact, dtype)
    # Triton's alpha gradient has one path (run by both coefficient paths' cases here).
    g_alpha = (Flavour("triton") if flavour.backend == "triton" else flavour)("combine_grad_alpha", grad, weight, words, alpha)
    assert g_alpha.dtype == alpha_dtype
    exact_g = grad_alpha_oracle(grad.cpu(), weight.cpu(), masks, alpha.cpu())
    torch.testing.assert_close(g_alpha.cpu().double(), exact_g, **_grad_tol(alpha_dtype))
    if flavour.backend != "reference":
        torch.testing.assert_close(g_alpha, reference.combine_grad_alpha(grad, weight, words, alpha), **_grad_tol(alpha_dtype))


# Several tiles (partial sums reduced in a fixed order); native: enough rows for two threads.
@pytest.mark.parametrize(
    "flavour, shape, t", backend_grid([((64, 3, 3, 3), 40)], [((9, 1500), 9)], backends=("native", "triton"), ids=shape_t)
)
def test_grad_alpha_is_deterministic(flavour, shape, t):
    """The same bits on every run, with one thread or two."""
    weight, masks, words, alpha = inputs(flavour, shape, t, seed=3)
    grad = torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(flavour.device)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = flavour("combine_grad_alpha", grad, weight, words, alpha)
        torch.set_num_threads(2)
        two = flavour("combine_grad_alpha", grad, weight, words, alpha)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two) and torch.equal(one, flavour("combine_grad_alpha", grad, weight, words, alpha))


@pytest.mark.parametrize("flavour", backend_grid(backends=("reference", "native")))
def test_non_contiguous_inputs(flavour):
    # (the op layer makes inputs contiguous; these backends also take strided ones)
    weight, masks, words, alpha = inputs(flavour, (9, 40), 5, per_channel=True)
    wt = weight.t().contiguous().t()  # same values, transposed strides
    at = alpha.t().contiguous().t()
    torch.testing.assert_close(flavour("combine", wt, words, at), combine_oracle(weight, masks, alpha).float())


@only("native")
def test_native_rejects_bad_input():
    from impresslearn import native

    weight, masks, words, alpha = packed_inputs((5, 37), 3)
    with pytest.raises(RuntimeError, match="alpha must have shape"):
        native.combine(weight, words, alpha[:2])
    with pytest.raises(RuntimeError, match="do not fit"):
        native.combine(weight[:4], words, alpha)
    with pytest.raises(RuntimeError, match="int32"):
        native.combine(weight, words.long(), alpha)
    with pytest.raises(RuntimeError, match="floating point"):
        native.combine(weight.int(), words, alpha)
    with pytest.raises(RuntimeError, match="does not match"):
        native.combine_grad_alpha(weight[:4], weight, words, alpha)
    # (no masks: the op layer refuses them first; called directly, an error, not a division by zero)
    with pytest.raises(RuntimeError, match="hold no masks"):
        native.combine(weight, words[:0], alpha[:0])
    with pytest.raises(RuntimeError, match="hold no masks"):
        native.combine_grad_alpha(weight, weight, words[:0], alpha[:0])


@only("native")
def test_auto_picks_native_on_cpu():
    assert ops.backend_for("cpu") == "native"


# --------------------------------------------------------------------------- through the public ops

THROUGH_OPS = [((6, 2, 3, 5), 9, d) for d in DTYPES] + [((13, 95), 33, torch.float32)]


@ALPHA
@pytest.mark.parametrize(
    "flavour, shape, t, dtype",
    backend_grid(THROUGH_OPS, backends=("native", "triton"), ids=lambda s, t, d: f"{shape_t(s, t)}-{case_id(d)}"),
)
def test_op_forward_and_backward_equal_reference(flavour, shape, t, dtype, per_channel):
    weight, masks, words, alpha = inputs(flavour, shape, t, dtype=dtype, per_channel=per_channel)
    packed = impresslearn.PackedMasks(words, weight.shape)
    grad = torch.randn(shape, generator=torch.Generator().manual_seed(2)).to(dtype).to(flavour.device)
    results = {}
    for name in ("reference", flavour.backend):
        w, a = weight.clone().requires_grad_(), alpha.clone().requires_grad_()
        with impresslearn.backend(name):
            out = ops.combine(w, packed, a)
            out.backward(grad)
        results[name] = (out.detach(), w.grad, a.grad)
    for got, want in zip(results[flavour.backend], results["reference"]):
        torch.testing.assert_close(got, want, **TOL[dtype])


@pytest.mark.parametrize("flavour", backend_grid(backends=("native", "triton")))
def test_conv_weights_equal_reference(flavour):
    """impress_conv2d runs the backend's combine, then the framework's convolution."""
    weight, masks, words, alpha = inputs(flavour, (6, 4, 3, 3), 9, per_channel=True)
    packed = impresslearn.PackedMasks(words, weight.shape)
    x = torch.randn(2, 4, 9, 7, generator=torch.Generator().manual_seed(0)).to(flavour.device)
    with impresslearn.backend(flavour.backend):
        out = ops.impress_conv2d(x, weight, packed, alpha, None, 1, 1)
    with impresslearn.backend("reference"):
        ref = ops.impress_conv2d(x, weight, packed, alpha, None, 1, 1)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def _f64(flavour, shape, t, per_channel, seed=0):
    weight, masks, words, alpha = inputs(flavour, shape, t, dtype=torch.float64, per_channel=per_channel, seed=seed)
    return weight.requires_grad_(), impresslearn.PackedMasks(words, weight.shape), alpha.double().requires_grad_()


@ALPHA
@pytest.mark.parametrize(
    "flavour, shape, t", backend_grid([((5, 37), 3), ((5, 37), 9), ((4, 2, 3, 3), 9), ((6,), 2)], ids=shape_t)
)
def test_combine_gradcheck(flavour, shape, t, per_channel):
    weight, packed, alpha = _f64(flavour, shape, t, per_channel)
    with impresslearn.backend(flavour.backend):
        # The interpreter checks random projections of the Jacobian: the same test, far fewer calls.
        assert torch.autograd.gradcheck(
            lambda w, a: ops.combine(w, packed, a), (weight, alpha), fast_mode=flavour.backend == "triton"
        )


# (weight shape, T, input shape, bias, stride, padding, dilation, groups)
CONV_CASES = [
    ((4, 4, 3, 3), 5, (2, 4, 6, 5), True, 1, 0, 1, 1),
    ((4, 4, 3, 3), 5, (2, 4, 6, 5), True, 2, 1, 1, 1),
    ((4, 2, 3, 3), 5, (2, 4, 6, 5), True, 1, "same", 2, 2),
    ((4, 4, 3, 3), 5, (4, 6, 5), True, (2, 1), (0, 1), 1, 1),
    ((4, 2, 3, 3), 33, (2, 2, 6, 5), False, 1, 1, 1, 1),
]


@ALPHA
@pytest.mark.parametrize(
    "flavour, wshape, t, xshape, bias, stride, padding, dilation, groups",
    backend_grid(
        CONV_CASES,
        ids=lambda w, t, x, b, s, p, d, g: (
            f"{shape_t(w, t)}-x{case_id(x)}-stride{case_id(s)}-pad{case_id(p)}-dil{d}-groups{g}{'-bias' if b else ''}"
        ),
    ),
)
def test_impress_conv2d_gradcheck(flavour, wshape, t, xshape, bias, stride, padding, dilation, groups, per_channel):
    weight, packed, alpha = _f64(flavour, wshape, t, per_channel)
    x = torch.randn(xshape, dtype=torch.float64).to(flavour.device).requires_grad_()
    b = torch.randn(wshape[0], dtype=torch.float64).to(flavour.device).requires_grad_() if bias else None
    with impresslearn.backend(flavour.backend):
        # fast_mode checks random projections of the Jacobian: the same test, far fewer evaluations.
        assert torch.autograd.gradcheck(
            lambda x, w, a, *b: ops.impress_conv2d(x, w, packed, a, b[0] if b else None, stride, padding, dilation, groups),
            (x, weight, alpha, *([b] if bias else [])),
            fast_mode=True,
        )


# --------------------------------------------------------------------------- GPU, realistic shapes

# LeNet-300-100, CIFAR ResNet-18 and ResNet-50 layer weights.
CUDA_DTYPES = [torch.float32, torch.float16, torch.bfloat16]
REAL_SHAPES = [
    (300, 784),
    (100, 300),
    (10, 100),
    (64, 64, 3, 3),
    (512, 512, 3, 3),
    (512, 256, 1, 1),
    (64, 3, 7, 7),
    (2048, 512, 1, 1),
    (1000, 2048),
]


@pytest.mark.cuda
@only("triton")
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("shape", REAL_SHAPES, ids=case_id)
def test_combine_cuda_realistic(shape):
    from impresslearn import kernels

    for dtype, t, per_channel in itertools.product(CUDA_DTYPES, [1, 8, 75], [False, True]):
        weight, masks, words, alpha = packed_inputs(shape, t, dtype=dtype, per_channel=per_channel, device=DEVICE)
        exact = combine_oracle(weight.cpu(), masks, alpha.cpu()).to(DEVICE)
        assert_within_torch_error(kernels.combine(weight, words, alpha), reference.combine(weight, words, alpha), exact, dtype)
        grad = torch.randn(shape, device=DEVICE).to(dtype)
        exact_g = grad_alpha_oracle(grad.cpu(), weight.cpu(), masks, alpha.cpu()).to(DEVICE)
        assert_within_torch_error(
            kernels.combine_grad_alpha(grad, weight, words, alpha),
            reference.combine_grad_alpha(grad, weight, words, alpha),
            exact_g,
            torch.float32,
        )


# --------------------------------------------------------------------------- edge cases (docs/design.md §5.4)

# Shapes that reach each kernel's paths (a remainder word, the native SIMD blocks, 1-D and 4-D),
# mask counts on both sides of 8 (the byte tables' groups) and past 32 (the native mask chunks).
EDGE_CASES = pairs([(3, 5), (7, 33), (5, 300), (5, 3, 3, 3), (17,)], [1, 9, 33])
TRITON_EDGE_CASES = pairs([(3, 5), (13, 95)], [1, 9])


@QUIET_NAN
@ALPHA
@pytest.mark.parametrize("flavour, shape, t", grid(COMBINE, EDGE_CASES, TRITON_EDGE_CASES, ids=shape_t))
def test_combine_non_finite_alpha(flavour, shape, t, per_channel):
    """A bit of 0 contributes exactly 0: a NaN / ±inf alpha_t reaches only the weights whose bit
    of mask t is set; the weights it does not reach keep their finite value (and inf - inf is NaN)."""
    for dtype in DTYPES:
        weight, masks, words, alpha = non_finite_inputs(
            shape, t, per_channel=per_channel, dtype=dtype, seed=t, alpha_fraction=1 / 16, device=flavour.device
        )
        expected = combine_oracle(weight.cpu(), masks, alpha.cpu())
        out = flavour("combine", weight, words, alpha)
        assert out.dtype == dtype
        assert_same_values(out, expected)
        assert expected.isfinite().any() and not expected.isfinite().all()  # the case tells the rules apart


@QUIET_NAN
@ALPHA
@pytest.mark.parametrize("flavour, shape, t", grid(COMBINE, EDGE_CASES, TRITON_EDGE_CASES, ids=shape_t))
def test_combine_non_finite_weight(flavour, shape, t, per_channel):
    """The weight multiplies its coefficient as IEEE says: a NaN / ±inf weight gives NaN under a
    coefficient of 0 (no bit set, or alphas that cancel), and a zero weight NaN under an infinite one."""
    weight, masks, words, alpha = non_finite_inputs(
        shape, t, per_channel=per_channel, seed=t + 1, alpha_fraction=0.1, weight_fraction=0.2, device=flavour.device
    )
    assert_same_values(flavour("combine", weight, words, alpha), combine_oracle(weight.cpu(), masks, alpha.cpu()))


@QUIET_NAN
@ALPHA
@pytest.mark.parametrize("flavour, shape, t", grid(GRAD_ALPHA, EDGE_CASES, TRITON_EDGE_CASES, ids=shape_t))
def test_grad_alpha_non_finite(flavour, shape, t, per_channel):
    """d alpha_t sums grad * weight over the set bits of mask t only: a NaN / ±inf grad or weight
    (or 0 * inf) reaches the masks whose bit is set there, and alpha's own value never matters."""
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        weight, masks, words, alpha = non_finite_inputs(
            shape,
            t,
            per_channel=per_channel,
            dtype=dtype,
            seed=t + 2,
            alpha_fraction=1 / 16,
            weight_fraction=0.02,
            device=flavour.device,
        )
        g = torch.Generator().manual_seed(t + 3)
        grad = sprinkle_non_finite(dyadic(shape, g), 0.02, g).to(dtype).to(flavour.device)
        expected = grad_alpha_oracle(grad.cpu(), weight.cpu(), masks, alpha.cpu())
        out = flavour("combine_grad_alpha", grad, weight, words, alpha)
        assert out.dtype == dtype
        assert_same_values(out, expected)


@QUIET_NAN
@ALPHA
@pytest.mark.parametrize("flavour", backend_grid())
def test_non_finite_alpha_through_ops(flavour, per_channel):
    """Forward and both gradients of ops.combine follow the rule on every backend: d weight is
    G ⊙ Σ_t alpha_t M_t (the same masked sum), d alpha stays finite (it does not depend on alpha)."""
    weight, masks, words, alpha = non_finite_inputs(
        (7, 33), 9, per_channel=per_channel, seed=4, alpha_fraction=1 / 16, device=flavour.device
    )
    grad = dyadic((7, 33), torch.Generator().manual_seed(5)).to(flavour.device)
    w, a = weight.clone().requires_grad_(), alpha.clone().requires_grad_()
    with impresslearn.backend(flavour.backend):
        out = ops.combine(w, impresslearn.PackedMasks(words, weight.shape), a)
        out.backward(grad)
    assert_same_values(out.detach(), combine_oracle(weight.cpu(), masks, alpha.cpu()))
    assert_same_values(w.grad, grad.cpu().double() * coefficients_oracle(masks, alpha.cpu()))
    assert_same_values(a.grad, grad_alpha_oracle(grad.cpu(), weight.cpu(), masks, alpha.cpu()))
    assert a.grad.isfinite().all()


def _raw_combine_calls(weight, words, alpha):
    """Every op that checks (weight, words, alpha), called on the raw words."""
    x = torch.zeros(2, *weight.shape[1:]) if weight.dim() == 2 else None
    calls = {
        "combine": lambda: ops._combine(weight, words, alpha),
        "combine_grad_alpha": lambda: ops._combine_grad_alpha(torch.zeros_like(weight), weight, words, alpha),
    }
    if x is not None:
        calls["impress_linear"] = lambda: ops._impress_linear(x, weight, words, alpha, None)
        calls["impress_linear_grad_input"] = lambda: ops._impress_linear_grad_input(
            torch.zeros(2, weight.shape[0]), weight, words, alpha
        )
    if weight.dim() == 4:
        xc = torch.zeros(1, weight.shape[1], 4, 4)
        calls["impress_conv2d"] = lambda: ops._impress_conv2d(xc, weight, words, alpha, None, [1, 1], [1, 1], [1, 1], 1)
    return calls


# (weight, words, alpha, message): what the packed format cannot hold, refused by the op layer.
REFUSED = {
    "weight-0d": (torch.tensor(1.0), torch.zeros(1, 1, 1, dtype=torch.int32), torch.ones(1), "0-d"),
    "weight-no_rows": (torch.zeros(0, 5), torch.zeros(1, 0, 1, dtype=torch.int32), torch.ones(1), "empty"),
    "weight-no_cols": (torch.zeros(3, 0), torch.zeros(1, 3, 0, dtype=torch.int32), torch.ones(1), "empty"),
    "weight-4d_empty": (torch.zeros(2, 0, 3, 3), torch.zeros(1, 2, 0, dtype=torch.int32), torch.ones(1), "empty"),
    "no_masks": (torch.ones(3, 5), torch.zeros(0, 3, 1, dtype=torch.int32), torch.ones(0), "no masks"),
    "no_masks-per_channel": (torch.ones(3, 5), torch.zeros(0, 3, 1, dtype=torch.int32), torch.ones(0, 3), "no masks"),
    "no_masks-conv": (torch.ones(2, 1, 3, 3), torch.zeros(0, 2, 1, dtype=torch.int32), torch.ones(0), "no masks"),
}


@pytest.mark.parametrize("flavour, case", backend_grid([(c,) for c in REFUSED]))
def test_what_the_format_cannot_hold_is_refused_alike(flavour, case):
    """0-d or empty weights and T = 0 masks: one ValueError from the op layer, whatever the backend
    (the native kernels would divide by T = 0; Triton's tiles by 0 columns)."""
    weight, words, alpha, message = (v.to(flavour.device) if isinstance(v, torch.Tensor) else v for v in REFUSED[case])
    with impresslearn.backend(flavour.backend):
        for name, call in _raw_combine_calls(weight, words, alpha).items():
            with pytest.raises(ValueError, match=message):
                call()
                pytest.fail(f"{name} accepted {case}")


@pytest.mark.parametrize("flavour", backend_grid())
def test_empty_batch_of_a_convolution(flavour):
    """A batch of 0 images gives a batch of 0 outputs, and zero gradients of the right shapes."""
    weight, masks, words, alpha = inputs(flavour, (4, 2, 3, 3), 5, per_channel=True)
    w, a = weight.clone().requires_grad_(), alpha.clone().requires_grad_()
    x = torch.zeros(0, 2, 6, 5, device=flavour.device, requires_grad=True)
    with impresslearn.backend(flavour.backend):
        out = ops.impress_conv2d(x, w, impresslearn.PackedMasks(words, weight.shape), a, None, 1, 1)
        out.sum().backward()
    assert out.shape == (0, 4, 6, 5)
    assert x.grad.shape == x.shape and w.grad.shape == w.shape and a.grad.shape == a.shape
    assert not w.grad.any() and not a.grad.any()
