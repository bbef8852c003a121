"""The torch.library ops: backend dispatch, input checks, the dense formulas, torch.compile.
Each primitive's gradcheck, opcheck and straight-through gradients, on every backend, are in
tests/kernels/test_<primitive>.py."""

import pytest
import torch
import torch.nn.functional as F
from cases import combine_oracle, make_combine_inputs

import impresslearn
from impresslearn import ops, pack_masks


def f64(shape, t, per_channel, seed=0):
    weight, masks, alpha = make_combine_inputs(shape, t, dtype=torch.float64, per_channel=per_channel, seed=seed)
    return weight.requires_grad_(), pack_masks(masks), alpha.double().requires_grad_(), masks


def test_impress_ops_equal_dense_formulas():
    weight, packed, alpha, masks = f64((5, 37), 4, True)
    w_eff = combine_oracle(weight.detach(), masks, alpha.detach())
    x = torch.randn(3, 37, dtype=torch.float64)
    torch.testing.assert_close(ops.impress_linear(x, weight, packed, alpha), F.linear(x, w_eff))
    cw, cp, ca, cm = f64((6, 2, 3, 3), 3, False)
    xc = torch.randn(2, 2, 8, 9, dtype=torch.float64)
    torch.testing.assert_close(
        ops.impress_conv2d(xc, cw, cp, ca, None, 1, 1), F.conv2d(xc, combine_oracle(cw.detach(), cm, ca.detach()), None, 1, 1)
    )


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


def _eager_cases():
    g = torch.Generator().manual_seed(7)
    w = torch.randn(5, 37, generator=g, dtype=torch.float64)
    words = pack_masks(torch.rand(3, 5, 37, generator=g) < 0.4).words
    alpha = torch.randn(3, generator=g, dtype=torch.float64)
    x = torch.randn(4, 37, generator=g, dtype=torch.float64)
    scores = torch.randn(5, 37, generator=g, dtype=torch.float64)
    return {
        "combine": (ops._combine, (w, words, alpha), (0, 2)),
        "impress_linear": (ops._impress_linear, (x, w, words, alpha, torch.randn(5, dtype=torch.float64)), (0, 1, 3, 4)),
        "popup_weight": (ops._popup_weight, (w, scores, 60), (0, 1)),
        "threshold_weight": (ops._threshold_weight, (w, scores), (0, 1)),
        "masked_weight": (ops._masked_weight, (w, words[:1]), (0,)),
    }


@pytest.mark.parametrize("name", list(_eager_cases()))
def test_the_eager_path_is_the_custom_op_without_its_dispatcher(name):
    """In eager mode an op runs the same check and kernel without the custom-op dispatcher (its
    grad_fn is the eager Function, not the custom op's); values, gradients and second-order
    gradients equal the custom op's exactly."""
    op, args, diff = _eager_cases()[name]

    def grads(call, create_graph):
        inputs = [a.detach().clone().requires_grad_(i in diff) if isinstance(a, torch.Tensor) else a for i, a in enumerate(args)]
        out = call(*inputs)
        leaves = [inputs[i] for i in diff]
        g = torch.autograd.grad((out * out).sum(), leaves, create_graph=create_graph)
        second = torch.autograd.grad(sum(t.sum() for t in g), leaves, allow_unused=True) if create_graph else None
        return out, g, second, out.grad_fn

    out_e, g_e, _, fn_e = grads(op, False)
    out_o, g_o, _, fn_o = grads(op.op, False)
    assert f"{name}_eager" in type(fn_e).__name__ and f"{name}_eager" not in type(fn_o).__name__
    assert torch.equal(out_e, out_o) and all(torch.equal(a, b) for a, b in zip(g_e, g_o))
    with torch.no_grad():
        assert op(*args).grad_fn is None and torch.equal(op(*args), out_o.detach())
    if name in ("combine", "impress_linear"):  # double backward through both paths
        _, _, s_e, _ = grads(op, True)
        _, _, s_o, _ = grads(op.op, True)
        assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(s_e, s_o))


def test_fake_and_meta_tensors_take_the_custom_op():
    from torch._subclasses.fake_tensor import FakeTensorMode

    op, args, _ = _eager_cases()["combine"]
    with FakeTensorMode() as mode:
        out = op(*[mode.from_tensor(a) for a in args])
    assert out.shape == (5, 37)
    meta = op(*[a.to("meta") for a in args])
    assert meta.is_meta and meta.shape == (5, 37)
