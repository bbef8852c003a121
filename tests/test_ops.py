"""The torch.library ops: gradients, opcheck, backend dispatch, input checks, torch.compile."""

import pytest
import torch
import torch.nn.functional as F

import impresslearn
from cases import combine_oracle, make_combine_inputs, popup_oracle
from impresslearn import ops, pack_masks


def f64(shape, t, per_channel, seed=0):
    weight, masks, alpha = make_combine_inputs(shape, t, dtype=torch.float64, per_channel=per_channel, seed=seed)
    return weight.requires_grad_(), pack_masks(masks), alpha.double().requires_grad_(), masks


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("shape, t", [((5, 37), 3), ((4, 2, 3, 3), 9), ((6,), 2)])
def test_combine_gradcheck(shape, t, per_channel):
    weight, packed, alpha, _ = f64(shape, t, per_channel)
    with impresslearn.backend("reference"):
        assert torch.autograd.gradcheck(lambda w, a: ops.combine(w, packed, a), (weight, alpha))


@pytest.mark.parametrize("per_channel", [False, True])
def test_impress_linear_gradcheck(per_channel):
    weight, packed, alpha, _ = f64((5, 37), 4, per_channel)
    x = torch.randn(2, 3, 37, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(5, dtype=torch.float64, requires_grad=True)
    with impresslearn.backend("reference"):
        assert torch.autograd.gradcheck(lambda *a: ops.impress_linear(a[0], a[1], packed, a[2], a[3]),
                                        (x, weight, alpha, bias))


def test_impress_linear_double_backward():
    """The input gradient is its own op (impress_linear_grad_input), differentiable again."""
    weight, packed, alpha, _ = f64((5, 37), 4, True)
    x = torch.randn(3, 37, dtype=torch.float64, requires_grad=True)
    with impresslearn.backend("reference"):
        assert torch.autograd.gradgradcheck(lambda *a: ops.impress_linear(a[0], a[1], packed, a[2]),
                                            (x, weight, alpha), fast_mode=True)


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("stride, padding, dilation, groups, batched", [
    (1, 0, 1, 1, True), (2, 1, 1, 1, True), (1, "same", 2, 2, True), ((2, 1), (0, 1), 1, 1, False)])
def test_impress_conv2d_gradcheck(per_channel, stride, padding, dilation, groups, batched):
    weight, packed, alpha, _ = f64((4, 4 // groups, 3, 3), 5, per_channel)
    x = torch.randn(*((2,) if batched else ()), 4, 6, 5, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, dtype=torch.float64, requires_grad=True)
    with impresslearn.backend("reference"):
        # fast_mode checks random projections of the Jacobian: the same test, far fewer evaluations.
        assert torch.autograd.gradcheck(
            lambda *a: ops.impress_conv2d(a[0], a[1], packed, a[2], a[3], stride, padding, dilation, groups),
            (x, weight, alpha, bias), fast_mode=True)


def test_impress_ops_equal_dense_formulas():
    weight, packed, alpha, masks = f64((5, 37), 4, True)
    w_eff = combine_oracle(weight.detach(), masks, alpha.detach())
    x = torch.randn(3, 37, dtype=torch.float64)
    torch.testing.assert_close(ops.impress_linear(x, weight, packed, alpha), F.linear(x, w_eff))
    cw, cp, ca, cm = f64((6, 2, 3, 3), 3, False)
    xc = torch.randn(2, 2, 8, 9, dtype=torch.float64)
    torch.testing.assert_close(ops.impress_conv2d(xc, cw, cp, ca, None, 1, 1),
                               F.conv2d(xc, combine_oracle(cw.detach(), cm, ca.detach()), None, 1, 1))


def test_popup_and_threshold_are_straight_through():
    scores = torch.randn(6, 11, requires_grad=True)
    g = torch.randn(6, 11)
    m = ops.popup_mask(scores.abs(), 0.25)
    torch.testing.assert_close(m, popup_oracle(scores.detach().abs(), 17))
    (m * g).sum().backward()
    torch.testing.assert_close(scores.grad, torch.sign(scores.detach()) * g)  # through abs: sign(S) * g
    scores.grad = None
    t = ops.threshold_mask(scores)
    (t * g).sum().backward()
    torch.testing.assert_close(scores.grad, g)


def test_popup_pack_returns_packed_masks():
    scores = torch.randn(5, 3, 3)
    packed = ops.popup_pack(scores, 0.5)
    assert packed.num_masks == 1 and packed.shape == scores.shape
    assert torch.equal(packed.unpack()[0].float(), ops.popup_mask(scores, 0.5))


def _opcheck_cases():
    weight, packed, alpha, _ = f64((5, 37), 3, False)
    cw, cp, ca, _ = f64((6, 2, 3, 3), 4, True)
    x = torch.randn(4, 37, dtype=torch.float64, requires_grad=True)
    xc = torch.randn(2, 2, 7, 7, dtype=torch.float64, requires_grad=True)
    scores = torch.randn(7, 9, requires_grad=True)
    return [
        (ops._combine, (weight, packed.words, alpha)),
        (ops._combine_grad_alpha, (torch.randn(5, 37, dtype=torch.float64), weight.detach(), packed.words, alpha.detach())),
        (ops._impress_linear, (x, weight, packed.words, alpha, torch.randn(5, dtype=torch.float64))),
        (ops._impress_linear, (x, weight, packed.words, alpha, None)),
        (ops._impress_conv2d, (xc, cw, cp.words, ca, None, [2, 2], [1, 1], [1, 1], 1)),
        (ops._impress_linear_grad_input, (torch.randn(4, 5, dtype=torch.float64, requires_grad=True), weight, packed.words, alpha)),
        (ops._popup_mask, (scores, 19)),
        (ops._popup_pack, (scores.detach(), 19)),
        (ops._threshold_mask, (scores,)),
    ]


@pytest.mark.parametrize("case", range(9))
def test_opcheck(case):
    op, args = _opcheck_cases()[case]
    with impresslearn.backend("reference"):
        torch.library.opcheck(op, args)


def test_backend_context():
    assert "reference" in impresslearn.available_backends()
    with impresslearn.backend("reference"):
        assert ops.backend_for("cpu") == "reference"
    with pytest.raises(ValueError, match="unknown backend"):
        with impresslearn.backend("cudnn"):
            pass
    for name in ("native", "triton"):
        if name not in impresslearn.available_backends():
            with pytest.raises(RuntimeError, match="not available"):
                with impresslearn.backend(name):
                    pass


def test_backend_context_nests_and_restores():
    from impresslearn import backends
    assert backends.requested() == "auto"
    with impresslearn.backend("reference"):
        with impresslearn.backend("auto"):
            assert backends.requested() == "auto"
        assert backends.requested() == "reference"
    assert backends.requested() == "auto"


@pytest.mark.parametrize("density", [0.0, -0.1, 1.5, float("nan")])
def test_density_outside_range(density):
    with pytest.raises(ValueError, match="density"):
        ops.popup_mask(torch.randn(10), density)


def test_density_type():
    with pytest.raises(TypeError):
        ops.popup_mask(torch.randn(10), "0.5")
    with pytest.raises(TypeError):
        ops.popup_mask(torch.randn(10), True)


def test_input_errors():
    weight, packed, alpha, _ = f64((5, 37), 3, False)
    with pytest.raises(ValueError, match="alpha must have shape"):
        ops.combine(weight, packed, alpha[:2])
    with pytest.raises(ValueError, match="do not cover"):
        ops.combine(weight[:4], packed, alpha)
    with pytest.raises(TypeError, match="PackedMasks"):
        ops.combine(weight, packed.words, alpha)
    with pytest.raises(TypeError, match="floating"):
        ops.combine(weight.long(), packed, alpha)
    with pytest.raises(TypeError, match="floating"):
        ops.combine(weight, packed, alpha.long())
    with pytest.raises(ValueError, match="does not match"):
        ops.impress_linear(torch.randn(2, 36, dtype=torch.float64), weight, packed, alpha)
    with pytest.raises(TypeError, match="dtype"):
        ops.impress_linear(torch.randn(2, 37), weight, packed, alpha)
    with pytest.raises(ValueError, match="bias"):
        ops.impress_linear(torch.randn(2, 37, dtype=torch.float64), weight, packed, alpha, torch.zeros(4, dtype=torch.float64))
    with pytest.raises(TypeError, match="floating"):
        ops.popup_mask(torch.arange(10), 0.5)
    with pytest.raises(ValueError, match="empty"):
        ops.popup_mask(torch.randn(0), 0.5)
    with pytest.raises(ValueError, match="asymmetric"):
        cw, cp, ca, _ = f64((2, 2, 2, 2), 1, False)
        ops.impress_conv2d(torch.randn(1, 2, 5, 5, dtype=torch.float64), cw, cp, ca, padding="same")


def test_compile_matches_eager():
    weight, packed, alpha, _ = f64((5, 37), 3, True)
    x = torch.randn(4, 37, dtype=torch.float64)

    def f(x, w, a):
        return ops.impress_linear(x, w, packed, a).relu().sum() + ops.popup_mask(w.abs(), 0.3).sum()

    eager = f(x, weight, alpha)
    compiled = torch.compile(f, fullgraph=True)(x, weight, alpha)
    torch.testing.assert_close(compiled, eager)


@pytest.mark.skipif("native" not in impresslearn.available_backends(), reason="needs the native backend")
def test_fused_linear_is_built_from_the_backends_own_combine(monkeypatch):
    # The native backend has no fused impress_linear: ops composes it from native.combine (and
    # the input gradient too), never from the reference's slow combine.
    from impresslearn import native, reference

    assert not hasattr(native, "impress_linear") and not hasattr(native, "impress_linear_grad_input")
    calls = []
    real = native.combine
    monkeypatch.setattr(native, "combine", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(reference, "combine", lambda *a: pytest.fail("the reference combine ran"))
    weight, masks, alpha = make_combine_inputs((7, 37), 3)
    x = torch.randn(5, 37, requires_grad=True)
    with impresslearn.backend("native"):
        out = ops.impress_linear(x, weight, pack_masks(masks), alpha)
        out.sum().backward()
    assert len(calls) >= 2  # forward, and the input gradient
    torch.testing.assert_close(out, F.linear(x, combine_oracle(weight, masks, alpha).float()))
