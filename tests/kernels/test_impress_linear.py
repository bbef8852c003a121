"""impress_linear (F.linear(x, combine(W, masks, alpha), bias)) and its input gradient
impress_linear_grad_input (grad @ W_eff) on every backend, against the float64 oracles.

The reference composes them from its combine; the native backend has no fused primitive, so the
op layer builds it from the native combine; Triton has a fused GEMM/GEMV for small batches
(forming W_eff tiles from the packed words) and combine + GEMM above (interpreted on CPU tensors
without CUDA, on small cases). Last, the edge cases of docs/design.md §5.4: non-finite alpha on
every path, empty batches.
"""

import itertools

import pytest
import torch
import torch.nn.functional as F
from cases import (
    DEVICE,
    QUIET_NAN,
    Flavour,
    assert_same_values,
    assert_within_torch_error,
    backend_grid,
    case_id,
    coefficients_oracle,
    combine_oracle,
    dyadic,
    grad_alpha_oracle,
    make_combine_inputs,
    non_finite_inputs,
    only,
    packed_inputs,
)

import impresslearn
from impresslearn import ops, pack_masks, reference

if "triton" in impresslearn.available_backends():
    from impresslearn.kernels.impress_linear import FUSED_MAX_BATCH
else:  # the other backends still run the batch sizes around Triton's threshold
    FUSED_MAX_BATCH = 64

ALPHA = pytest.mark.parametrize("per_channel", [False, True], ids=["per_layer", "per_channel"])


def inputs(flavour: Flavour, rows, cols, t, **kw):
    return packed_inputs((rows, cols), t, device=flavour.device, **kw)


def exact_linear(x, weight, masks, alpha, bias=None):
    return F.linear(
        x.cpu().double(), combine_oracle(weight.cpu(), masks, alpha.cpu()), None if bias is None else bias.cpu().double()
    )


# (batch shape, split of Triton's reduction axis): GEMV, split-K / split-N partial sums, and a
# batch above the fused kernel's threshold (combine + GEMM). Split is Triton's alone.
BATCHES = [((1,), None), ((2, 3), 2), ((5,), 3), ((FUSED_MAX_BATCH + 6,), None)]
OTHER_BATCHES = [(b, None) for b, _ in BATCHES]


def linear_cases(layers):
    return ([(*layer, *b) for layer in layers for b in OTHER_BATCHES], [(*layer, *b) for layer in layers for b in BATCHES])


def linear_id(rows, cols, t, batch, split):
    return f"{rows}x{cols}-T{t}-batch{case_id(batch)}" + (f"-split{split}" if split else "")


def split_kw(split):
    return {"split": split} if split else {}


@pytest.mark.parametrize("layout", ["per_layer", "per_channel-bias"])
@pytest.mark.parametrize(
    "flavour, rows, cols, t, batch, split",
    backend_grid(*linear_cases([(13, 95, 1), (13, 95, 9), (70, 33, 8), (5, 70, 33)]), ids=linear_id),
)
def test_impress_linear_matches_oracle(flavour, rows, cols, t, batch, split, layout):
    per_channel = with_bias = layout != "per_layer"
    weight, masks, words, alpha = inputs(flavour, rows, cols, t, per_channel=per_channel, seed=t)
    x = torch.randn(*batch, cols).to(flavour.device)
    bias = torch.randn(rows).to(flavour.device) if with_bias else None
    out = flavour("impress_linear", x, weight, words, alpha, bias, **split_kw(split))
    assert out.shape == (*batch, rows) and out.dtype == x.dtype
    torch.testing.assert_close(out.cpu().double(), exact_linear(x, weight, masks, alpha, bias), rtol=1e-5, atol=1e-4)


@ALPHA
@pytest.mark.parametrize(
    "flavour, rows, cols, t, batch, split", backend_grid(*linear_cases([(13, 95, 9), (70, 33, 8), (5, 70, 33)]), ids=linear_id)
)
def test_grad_input_matches_oracle(flavour, rows, cols, t, batch, split, per_channel):
    """grad @ W_eff (Triton walks the packed words along the output rows)."""
    weight, masks, words, alpha = inputs(flavour, rows, cols, t, per_channel=per_channel, seed=t)
    grad = torch.randn(*batch, rows).to(flavour.device)
    out = flavour("impress_linear_grad_input", grad, weight, words, alpha, **split_kw(split))
    assert out.shape == (*batch, cols) and out.dtype == grad.dtype
    exact = grad.cpu().double() @ combine_oracle(weight.cpu(), masks, alpha.cpu())
    torch.testing.assert_close(out.cpu().double(), exact, rtol=1e-5, atol=1e-4)


@only("triton")
def test_triton_several_row_blocks_of_the_fused_kernel():
    """A batch above one BLOCK_M still uses the fused kernel when the threshold allows it."""
    fused = Flavour("triton", "fused")
    weight, masks, words, alpha = inputs(fused, 13, 40, 9, per_channel=True)
    x = torch.randn(FUSED_MAX_BATCH + 6, 40).to(DEVICE)
    out = fused("impress_linear", x, weight, words, alpha, None)
    torch.testing.assert_close(out.cpu().double(), exact_linear(x, weight, masks, alpha), rtol=1e-5, atol=1e-4)
    g = torch.randn(FUSED_MAX_BATCH + 6, 13).to(DEVICE)
    gx = fused("impress_linear_grad_input", g, weight, words, alpha)
    torch.testing.assert_close(
        gx.cpu().double(), g.cpu().double() @ combine_oracle(weight.cpu(), masks, alpha.cpu()), rtol=1e-5, atol=1e-4
    )


def assert_within_rounding_bound(out, x, w_exact, dtype, bias=None):
    """|out - exact| within the forward error bound of a length-K dot product whose operands are
    rounded to `dtype`: (K + 2) eps (|x| @ |W|^T + |bias|)."""
    x = x.cpu().double()
    exact = x @ w_exact.T + (0 if bias is None else bias.cpu().double())
    bound = (
        (x.shape[-1] + 2)
        * torch.finfo(dtype).eps
        * (x.abs() @ w_exact.abs().T + (0 if bias is None else bias.cpu().double().abs()))
    )
    err = (out.cpu().double() - exact).abs()
    assert (err <= bound + 1e-300).all(), f"error {err.max().item():.3g} beyond the rounding bound"


@ALPHA
@pytest.mark.parametrize(
    "flavour, dtype, batch",
    backend_grid(
        [(d, b) for d in (torch.float16, torch.bfloat16, torch.float64) for b in [(3,), (FUSED_MAX_BATCH + 6,)]],
        ids=lambda d, b: f"{case_id(d)}-batch{case_id(b)}",
    ),
)
def test_dtypes(flavour, dtype, batch, per_channel):
    """fp16 / bf16: within twice the same-dtype PyTorch error of the exact result (Triton: fp64
    takes combine + GEMM); every backend within the rounding error bound of a dot product."""
    weight, masks, words, alpha = inputs(flavour, 13, 95, 9, dtype=dtype, per_channel=per_channel)
    x = torch.randn(*batch, 95).to(dtype).to(flavour.device)
    bias = torch.randn(13).to(dtype).to(flavour.device)
    w_exact = combine_oracle(weight.cpu(), masks, alpha.cpu())
    out = flavour("impress_linear", x, weight, words, alpha, bias)
    assert out.dtype == dtype
    assert_within_rounding_bound(out, x, w_exact, dtype, bias)
    g = torch.randn(*batch, 13).to(dtype).to(flavour.device)
    gx = flavour("impress_linear_grad_input", g, weight, words, alpha)
    assert gx.dtype == dtype
    assert_within_rounding_bound(gx, g, w_exact.T, dtype)
    if flavour.backend != "reference":
        assert_within_torch_error(
            out,
            reference.impress_linear(x, weight, words, alpha, bias),
            exact_linear(x, weight, masks, alpha, bias).to(flavour.device),
            dtype,
        )
        assert_within_torch_error(
            gx, reference.impress_linear_grad_input(g, weight, words, alpha), g.double() @ w_exact.to(flavour.device), dtype
        )


@ALPHA
@pytest.mark.parametrize(
    "flavour, batch",
    backend_grid([((4,),), ((2, FUSED_MAX_BATCH),)], backends=("native", "triton"), ids=lambda b: f"batch{case_id(b)}"),
)
def test_forward_backward_through_ops(flavour, batch, per_channel):
    """Every gradient (x, weight, alpha, bias) under the backend equals the reference backend's."""
    weight, masks, words, alpha = inputs(flavour, 13, 95, 9, per_channel=per_channel)
    packed = impresslearn.PackedMasks(words, weight.shape)
    x = torch.randn(*batch, 95).to(flavour.device)
    bias = torch.randn(13).to(flavour.device)
    g = torch.randn(*batch, 13).to(flavour.device)
    results = {}
    for name in ("reference", flavour.backend):
        leaves = [t.clone().requires_grad_() for t in (x, weight, alpha, bias)]
        with impresslearn.backend(name):
            out = ops.impress_linear(leaves[0], leaves[1], packed, leaves[2], leaves[3])
            (out * g).sum().backward()
        results[name] = [out.detach()] + [t.grad for t in leaves]
    for got, want in zip(results[flavour.backend], results["reference"]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


def _f64(flavour, t, per_channel):
    weight, masks, words, alpha = inputs(flavour, 5, 37, t, dtype=torch.float64, per_channel=per_channel)
    return weight.requires_grad_(), impresslearn.PackedMasks(words, weight.shape), alpha.double().requires_grad_()


@ALPHA
@pytest.mark.parametrize("flavour, batch, t", backend_grid([((3,), 9), ((2, 3), 4)], ids=lambda b, t: f"batch{case_id(b)}-T{t}"))
def test_gradcheck(flavour, batch, t, per_channel):
    weight, packed, alpha = _f64(flavour, t, per_channel)
    x = torch.randn(*batch, 37, dtype=torch.float64).to(flavour.device).requires_grad_()
    bias = torch.randn(5, dtype=torch.float64).to(flavour.device).requires_grad_()
    with impresslearn.backend(flavour.backend):
        # The interpreter checks random projections of the Jacobian: the same test, far fewer calls.
        assert torch.autograd.gradcheck(
            lambda *a: ops.impress_linear(a[0], a[1], packed, a[2], a[3]),
            (x, weight, alpha, bias),
            fast_mode=flavour.backend == "triton",
        )


@ALPHA
@pytest.mark.parametrize("flavour", backend_grid())
def test_double_backward(flavour, per_channel):
    """The input gradient is its own op (impress_linear_grad_input), differentiable again."""
    weight, packed, alpha = _f64(flavour, 4, per_channel)
    x = torch.randn(3, 37, dtype=torch.float64).to(flavour.device).requires_grad_()
    with impresslearn.backend(flavour.backend):
        assert torch.autograd.gradgradcheck(
            lambda *a: ops.impress_linear(a[0], a[1], packed, a[2]), (x, weight, alpha), fast_mode=True
        )


@only("native")
def test_native_linear_is_built_from_the_native_combine(monkeypatch):
    # The native backend has no fused impress_linear: ops composes it from native.combine, never
    # from the reference's slow combine, and the input gradient reuses the forward's W_eff.
    from impresslearn import native

    assert "impress_linear" not in native.KERNELS and "impress_linear_grad_input" not in native.KERNELS
    calls = []
    real = native.KERNELS["combine"]
    monkeypatch.setitem(native.KERNELS, "combine", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setitem(reference.KERNELS, "combine", lambda *a: pytest.fail("the reference combine ran"))
    weight, masks, alpha = make_combine_inputs((7, 37), 3)
    x = torch.randn(5, 37, requires_grad=True)
    with impresslearn.backend("native"):
        out = ops.impress_linear(x, weight, pack_masks(masks), alpha)
        out.sum().backward()
    assert len(calls) == 1  # the forward's; the input gradient is grad @ that W_eff
    w_eff = combine_oracle(weight, masks, alpha).float()
    torch.testing.assert_close(out, F.linear(x, w_eff))
    torch.testing.assert_close(x.grad, torch.ones(5, 7) @ w_eff)


# --------------------------------------------------------------------------- GPU, realistic shapes

# LeNet-300-100, a CIFAR ResNet-18 classifier, ResNet-50's classifier and a 1x1 conv as a GEMM.
REAL_LINEAR = [(300, 784), (100, 300), (10, 100), (100, 512), (1000, 2048), (2048, 512)]


@pytest.mark.cuda
@only("triton")
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("rows, cols", REAL_LINEAR)
def test_impress_linear_cuda_realistic(rows, cols):
    from impresslearn import kernels

    for dtype, t, batch, per_channel in itertools.product(
        [torch.float32, torch.float16, torch.bfloat16], [1, 8, 75], [1, 16, 128], [False, True]
    ):
        weight, masks, words, alpha = packed_inputs((rows, cols), t, dtype=dtype, per_channel=per_channel, device=DEVICE)
        x = torch.randn(batch, cols, device=DEVICE).to(dtype)
        exact = exact_linear(x, weight, masks, alpha).to(DEVICE)
        assert_within_torch_error(
            kernels.impress_linear(x, weight, words, alpha, None),
            reference.impress_linear(x, weight, words, alpha, None),
            exact,
            dtype,
        )
        g = torch.randn(batch, rows, device=DEVICE).to(dtype)
        exact_g = g.double() @ combine_oracle(weight.cpu(), masks, alpha.cpu()).to(DEVICE)
        assert_within_torch_error(
            kernels.impress_linear_grad_input(g, weight, words, alpha),
            reference.impress_linear_grad_input(g, weight, words, alpha),
            exact_g,
            dtype,
        )


# --------------------------------------------------------------------------- edge cases (docs/design.md §5.4)


def linear_of(x, w_eff, bias=None):
    """x @ w_eff^T (+ bias) in float64, one product at a time (no BLAS, which may skip zeros)."""
    out = (x.cpu().double()[..., None, :] * w_eff.double()).sum(-1)
    return out if bias is None else out + bias.cpu().double()


@QUIET_NAN
@ALPHA
@pytest.mark.parametrize(
    "flavour, rows, cols, t, batch, split", backend_grid(*linear_cases([(13, 95, 9), (5, 70, 33)]), ids=linear_id)
)
def test_non_finite_alpha(flavour, rows, cols, t, batch, split, per_channel):
    """impress_linear is F.linear over the combine of §5.4 (a bit of 0 contributes exactly 0), in
    every path: fused GEMM / GEMV, split partial sums, combine + GEMM. Inputs have no zeros, so a
    NaN or ±inf of W_eff reaches its output row as IEEE says (x · inf is ±inf, inf - inf NaN)."""
    weight, masks, words, alpha = non_finite_inputs(
        (rows, cols), t, per_channel=per_channel, seed=t, alpha_fraction=1 / 16, density=0.1, device=flavour.device
    )
    g = torch.Generator().manual_seed(t)
    x, bias, grad = (dyadic(s, g).to(flavour.device) for s in ((*batch, cols), (rows,), (*batch, rows)))
    w_eff = combine_oracle(weight.cpu(), masks, alpha.cpu())
    out = flavour("impress_linear", x, weight, words, alpha, bias, **split_kw(split))
    assert_same_values(out, linear_of(x, w_eff, bias))
    gx = flavour("impress_linear_grad_input", grad, weight, words, alpha, **split_kw(split))
    assert_same_values(gx, linear_of(grad, w_eff.T))
    if per_channel:  # rows whose alphas are all finite keep finite outputs
        assert out.isfinite().any() and not out.isfinite().all()


@QUIET_NAN
@pytest.mark.parametrize("flavour", backend_grid())
def test_non_finite_alpha_through_ops(flavour):
    """Forward and every gradient through ops.impress_linear; d alpha stays finite (it does not
    depend on alpha), rows untouched by a non-finite alpha keep finite outputs and gradients."""
    weight, masks, words, alpha = non_finite_inputs(
        (13, 40), 9, per_channel=True, seed=2, alpha_fraction=1 / 16, density=0.1, device=flavour.device
    )
    g = torch.Generator().manual_seed(3)
    x, bias, grad = (dyadic(s, g).to(flavour.device) for s in ((4, 40), (13,), (4, 13)))
    leaves = [t.clone().requires_grad_() for t in (x, weight, alpha, bias)]
    with impresslearn.backend(flavour.backend):
        out = ops.impress_linear(leaves[0], leaves[1], impresslearn.PackedMasks(words, weight.shape), leaves[2], leaves[3])
        out.backward(grad)
    w_eff = combine_oracle(weight.cpu(), masks, alpha.cpu())
    assert_same_values(out.detach(), linear_of(x, w_eff, bias))
    assert_same_values(leaves[0].grad, linear_of(grad, w_eff.T))
    g_eff = grad.cpu().double().T @ x.cpu().double()  # finite and exact
    assert_same_values(leaves[1].grad, g_eff * coefficients_oracle(masks, alpha.cpu()))
    assert_same_values(leaves[2].grad, grad_alpha_oracle(g_eff, weight.cpu(), masks, alpha.cpu()))
    assert leaves[2].grad.isfinite().all() and leaves[3].grad.isfinite().all()


@pytest.mark.parametrize("flavour, batch", backend_grid([((0,),), ((3, 0),), ((0, 2),)], ids=lambda b: f"batch{case_id(b)}"))
def test_empty_batch(flavour, batch):
    """A batch of no rows gives no rows (on every path), and zero gradients of the right shapes."""
    weight, masks, words, alpha = inputs(flavour, 13, 40, 9, per_channel=True)
    x = torch.zeros(*batch, 40, device=flavour.device)
    bias = torch.randn(13).to(flavour.device)
    assert flavour("impress_linear", x, weight, words, alpha, bias).shape == (*batch, 13)
    assert flavour("impress_linear_grad_input", torch.zeros(*batch, 13, device=flavour.device), weight, words, alpha).shape == (
        *batch,
        40,
    )
    leaves = [t.clone().requires_grad_() for t in (x, weight, alpha, bias)]
    with impresslearn.backend(flavour.backend):
        out = ops.impress_linear(leaves[0], leaves[1], impresslearn.PackedMasks(words, weight.shape), leaves[2], leaves[3])
        out.sum().backward()
    assert out.shape == (*batch, 13)
    for leaf in leaves:
        assert leaf.grad.shape == leaf.shape and not leaf.grad.any()
