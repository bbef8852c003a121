"""threshold_weight (a SupSup threshold layer's effective weight `weight * (scores >= 0)`, fused)
on every backend, against the composed reference: odd shapes, every dtype, NaN, ±0 and ±inf
scores; its straight-through gradients, gradcheck and opcheck; the layers' step equal to the
composed one bit for bit.

Triton has no threshold_weight (nor threshold_mask): the op layer runs the reference's.
"""

import pytest
import torch
import torch.nn.functional as F
from cases import DTYPES, SHAPES, backend_grid

import impresslearn
from impresslearn import ops, reference
from impresslearn.layers import SupermaskConv2d, SupermaskLinear

SPECIAL = torch.tensor([float("nan"), -float("nan"), -0.0, 0.0, float("inf"), -float("inf"), 1e-40, -1e-40])


def inputs(shape, dtype, seed=0, special=False, device="cpu"):
    """(weight, scores): normal values, a quarter of the scores special values if `special`."""
    g = torch.Generator().manual_seed(seed)
    weight, scores = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    if special:
        flat = scores.reshape(-1)
        where = torch.randint(0, flat.numel(), (max(1, flat.numel() // 4),), generator=g)
        flat[where] = SPECIAL[torch.randint(0, len(SPECIAL), (len(where),), generator=g)]
    return weight.to(dtype).to(device), scores.to(dtype).to(device)


# Triton has no threshold_weight kernel (declared portable, docs/design.md §5.1): the backends with one.
@pytest.mark.parametrize(
    "flavour, shape, dtype", backend_grid([(s, d) for s in SHAPES for d in DTYPES], backends=("reference", "native"))
)
@pytest.mark.parametrize("special", [False, True])
def test_threshold_weight_equals_reference(flavour, shape, dtype, special):
    """weight where scores >= 0 (-0.0 included, NaN not), weight * 0 elsewhere, exactly."""
    weight, scores = inputs(shape, dtype, special=special, device=flavour.device)
    out = flavour("threshold_weight", weight, scores)
    want = reference.threshold_weight(weight.cpu(), scores.cpu())
    assert out.dtype == dtype and torch.equal(out.cpu(), want)
    assert torch.equal(want, weight.cpu() * (scores.cpu() >= 0).to(dtype))


@pytest.mark.parametrize("flavour", backend_grid())
def test_straight_through_gradients(flavour):
    """The scores get grad * weight, the weight grad * mask: the composed ops' gradients."""
    weight, scores = inputs((9, 37), torch.float32, special=True, device=flavour.device)
    g = torch.randn(9, 37).to(flavour.device)
    w1, s1 = weight.clone().requires_grad_(), scores.clone().requires_grad_()
    w2, s2 = weight.clone().requires_grad_(), scores.clone().requires_grad_()
    with impresslearn.backend(flavour.backend):
        (ops.threshold_weight(w1, s1) * g).sum().backward()
        (w2 * ops.threshold_mask(s2) * g).sum().backward()
    assert torch.equal(s1.grad, s2.grad) and torch.equal(w1.grad, w2.grad)


@pytest.mark.parametrize("flavour", backend_grid())
def test_gradcheck(flavour):
    """float64, the weight's gradient (a small change of the weight keeps the mask)."""
    weight, scores = inputs((5, 7), torch.float64, device=flavour.device)
    with impresslearn.backend(flavour.backend):
        assert torch.autograd.gradcheck(
            lambda w: ops.threshold_weight(w, scores), (weight.requires_grad_(),), fast_mode=flavour.backend == "triton"
        )


@pytest.mark.parametrize("layer", ["linear", "conv"])
@pytest.mark.parametrize("flavour", backend_grid())
def test_layer_step_equals_composed(flavour, layer):
    torch.manual_seed(0)
    kw = dict(mask="threshold")
    net = SupermaskLinear(37, 13, **kw) if layer == "linear" else SupermaskConv2d(3, 5, 3, **kw)
    net = net.to(flavour.device)
    x = torch.randn((4, 37) if layer == "linear" else (2, 3, 6, 6)).to(flavour.device)
    with impresslearn.backend(flavour.backend):
        out = net(x)
        out.square().sum().backward()
        fused, net.live_scores.grad = net.live_scores.grad, None
        w = net.weight * ops.threshold_mask(net.live_scores)
        want = F.linear(x, w) if layer == "linear" else F.conv2d(x, w)
        want.square().sum().backward()
    assert torch.equal(out, want) and torch.equal(fused, net.live_scores.grad)


def test_refusals():
    w, s = inputs((4, 5), torch.float32)
    with pytest.raises(TypeError, match="dtype"):
        ops.threshold_weight(w.double(), s)
    with pytest.raises(ValueError, match="differ"):
        ops.threshold_weight(w[:, :4], s)
