"""The native combine and grad-alpha against the reference and the dense oracles: every kernel
variant this CPU runs, odd shapes, T from 1 to 70, both alpha layouts, every dtype; gradcheck in
float64 and opcheck through the public ops under backend("native")."""

import pytest
import torch

import impresslearn
from cases import DTYPES, MASK_COUNTS, SHAPES, TOL, combine_oracle, grad_alpha_oracle, make_combine_inputs
from impresslearn import native, ops, pack_masks, reference
from native_cases import EXTRA_SHAPES, VARIANTS, requires_native, variant

pytestmark = requires_native


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("t", MASK_COUNTS)
@pytest.mark.parametrize("shape", SHAPES + EXTRA_SHAPES)
def test_combine_matches_reference(shape, t, per_channel, name):
    weight, masks, alpha = make_combine_inputs(shape, t, per_channel=per_channel, seed=t)
    words = pack_masks(masks).words
    with variant(name):
        out = native.combine(weight, words, alpha)
    assert out.shape == weight.shape and out.dtype == weight.dtype
    torch.testing.assert_close(out, reference.combine(weight, words, alpha), **TOL[torch.float32])
    torch.testing.assert_close(out.double(), combine_oracle(weight, masks, alpha), **TOL[torch.float32])


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("t", MASK_COUNTS)
@pytest.mark.parametrize("shape", SHAPES + EXTRA_SHAPES)
def test_grad_alpha_matches_reference(shape, t, per_channel, name):
    weight, masks, alpha = make_combine_inputs(shape, t, per_channel=per_channel, seed=t + 1)
    grad = torch.randn(shape)
    words = pack_masks(masks).words
    with variant(name):
        out = native.combine_grad_alpha(grad, weight, words, alpha)
    assert out.shape == alpha.shape and out.dtype == alpha.dtype
    torch.testing.assert_close(out, reference.combine_grad_alpha(grad, weight, words, alpha), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(out.double(), grad_alpha_oracle(grad, weight, masks, alpha), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("per_channel", [False, True])
def test_dtypes(dtype, per_channel, name):
    weight, masks, alpha = make_combine_inputs((13, 300), 33, dtype=dtype, per_channel=per_channel)
    words = pack_masks(masks).words
    alpha = alpha.to(dtype)
    grad = torch.randn(13, 300, generator=torch.Generator().manual_seed(5)).to(dtype)
    with variant(name):
        out = native.combine(weight, words, alpha)
        g_alpha = native.combine_grad_alpha(grad, weight, words, alpha)
    assert out.dtype == dtype and g_alpha.dtype == dtype
    torch.testing.assert_close(out, reference.combine(weight, words, alpha), **TOL[dtype])
    # Sums of thousands of products, added in another order than the reference's einsum.
    grad_tol = {k: max(v, 1e-4) if k == "atol" else v for k, v in TOL[dtype].items()}
    torch.testing.assert_close(g_alpha, reference.combine_grad_alpha(grad, weight, words, alpha), **grad_tol)


def test_mixed_dtypes_accumulate_like_the_reference():
    # fp16 weight with fp32 alpha accumulates in fp32; fp32 weight with fp64 alpha gives an fp64 gradient.
    weight, masks, alpha = make_combine_inputs((7, 33), 9, dtype=torch.float16)
    words = pack_masks(masks).words
    torch.testing.assert_close(native.combine(weight, words, alpha), reference.combine(weight, words, alpha), **TOL[torch.float16])
    w32, a64, g32 = weight.float(), alpha.double(), torch.randn(7, 33)
    out = native.combine_grad_alpha(g32, w32, words, a64)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, reference.combine_grad_alpha(g32, w32, words, a64), rtol=1e-12, atol=1e-12)


def test_grad_alpha_does_not_depend_on_thread_count():
    weight, masks, alpha = make_combine_inputs((64, 3, 3, 3), 40, seed=3)
    words, grad = pack_masks(masks).words, torch.randn(64, 3, 3, 3)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = native.combine_grad_alpha(grad, weight, words, alpha)
        torch.set_num_threads(2)
        two = native.combine_grad_alpha(grad, weight, words, alpha)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


def test_non_contiguous_inputs():
    weight, masks, alpha = make_combine_inputs((9, 40), 5, per_channel=True)
    words = pack_masks(masks).words
    wt = weight.t().contiguous().t()  # same values, transposed strides
    at = alpha.t().contiguous().t()
    torch.testing.assert_close(native.combine(wt, words, at), reference.combine(weight, words, alpha))


def test_native_rejects_bad_input():
    weight, masks, alpha = make_combine_inputs((5, 37), 3)
    words = pack_masks(masks).words
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


# --------------------------------------------------------------------------- through the public ops

def test_auto_picks_native_on_cpu():
    assert ops.backend_for("cpu") == "native"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("per_channel", [False, True])
def test_op_forward_and_backward_equal_reference(dtype, per_channel):
    weight, masks, alpha = make_combine_inputs((6, 2, 3, 5), 9, dtype=dtype, per_channel=per_channel)
    packed, grad = pack_masks(masks), torch.randn(6, 2, 3, 5).to(dtype)
    results = {}
    for name in ("reference", "native"):
        w, a = weight.clone().requires_grad_(), alpha.clone().requires_grad_()
        with impresslearn.backend(name):
            out = ops.combine(w, packed, a)
            out.backward(grad)
        results[name] = (out.detach(), w.grad, a.grad)
    for got, want in zip(results["native"], results["reference"]):
        torch.testing.assert_close(got, want, **TOL[dtype])


def _f64(shape, t, per_channel):
    weight, masks, alpha = make_combine_inputs(shape, t, dtype=torch.float64, per_channel=per_channel)
    return weight.requires_grad_(), pack_masks(masks), alpha.double().requires_grad_()


@pytest.mark.parametrize("per_channel", [False, True])
def test_gradcheck_through_ops(per_channel):
    weight, packed, alpha = _f64((5, 37), 9, per_channel)
    x = torch.randn(3, 37, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(5, dtype=torch.float64, requires_grad=True)
    cw, cp, ca = _f64((4, 2, 3, 3), 33, per_channel)
    xc = torch.randn(2, 2, 6, 5, dtype=torch.float64, requires_grad=True)
    with impresslearn.backend("native"):
        assert torch.autograd.gradcheck(lambda w, a: ops.combine(w, packed, a), (weight, alpha))
        assert torch.autograd.gradcheck(lambda *a: ops.impress_linear(a[0], a[1], packed, a[2], a[3]),
                                        (x, weight, alpha, bias))
        assert torch.autograd.gradcheck(lambda *a: ops.impress_conv2d(a[0], a[1], cp, a[2], None, 1, 1),
                                        (xc, cw, ca), fast_mode=True)
        assert torch.autograd.gradgradcheck(lambda *a: ops.impress_linear(a[0], a[1], packed, a[2]),
                                            (x, weight, alpha), fast_mode=True)


def test_opcheck_native_ops():
    weight, packed, alpha = _f64((5, 37), 9, True)
    w32, p32, a32 = _f64((7, 3, 3), 70, False)
    for args in [(weight.detach(), packed.words, alpha.detach()), (w32.detach().float(), p32.words, a32.detach().float())]:
        torch.library.opcheck(torch.ops.impresslearn_native.combine.default, args)
        torch.library.opcheck(torch.ops.impresslearn_native.combine_grad_alpha.default, (torch.randn_like(args[0]), *args))


def test_opcheck_public_ops_on_native():
    from test_ops import _opcheck_cases

    with impresslearn.backend("native"):
        for op, args in _opcheck_cases():
            torch.library.opcheck(op, args)
