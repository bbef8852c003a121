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
