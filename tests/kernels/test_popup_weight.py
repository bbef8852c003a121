"""popup_weight (an edge-popup layer's effective weight `weight * popup_mask(|scores|, k)`, fused)
and its scores' gradient popup_weight_grad_scores (`grad * weight * sgn(scores)`) on every
backend, against the composed reference: odd shapes, every dtype, ties, NaN, ±0 and ±inf
scores; gradcheck and opcheck of the ops; the layers' step equal to the composed one bit for bit.

Triton has no fused popup_weight: the op layer builds it from Triton's own popup_mask.
"""

import pytest
import torch
import torch.nn.functional as F
from cases import DTYPES, SHAPES, Flavour, backend_grid, only

import impresslearn
from impresslearn import ops, reference
from impresslearn.layers import SupermaskConv2d, SupermaskLinear

SPECIAL = torch.tensor([float("nan"), -float("nan"), -0.0, 0.0, float("inf"), -float("inf"), 1e-40, -1e-40])


def inputs(shape, dtype, seed=0, special=False, levels=0, device="cpu"):
    """(weight, scores, grad): normal values; scores with `levels` distinct magnitudes (ties) or a
    quarter of them special values."""
    g = torch.Generator().manual_seed(seed)
    weight, grad = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    scores = torch.randn(shape, generator=g)
    if levels:
        scores = (torch.randint(0, levels, shape, generator=g) - levels // 2).float()
    if special:
        flat = scores.reshape(-1)
        where = torch.randint(0, flat.numel(), (max(1, flat.numel() // 4),), generator=g)
        flat[where] = SPECIAL[torch.randint(0, len(SPECIAL), (len(where),), generator=g)]
    return tuple(t.to(dtype).to(device) for t in (weight, scores, grad))


CASES = [(shape, dtype) for shape in SHAPES for dtype in DTYPES]
TRITON_CASES = [((7, 33), torch.float32), ((5, 3, 3, 3), torch.float16)]


@pytest.mark.parametrize("flavour, shape, dtype", backend_grid(CASES, TRITON_CASES))
@pytest.mark.parametrize("special, levels", [(False, 0), (True, 0), (False, 3)])
@pytest.mark.parametrize("density", [0.1, 0.5, 1.0])
def test_popup_weight_equals_reference(flavour, shape, dtype, special, levels, density):
    """The fused product is the composed one exactly (weight times 0 or 1 is exact)."""
    weight, scores, grad = inputs(shape, dtype, special=special, levels=levels, device=flavour.device)
    k = ops.popup_k(scores.numel(), density)
    out = flavour("popup_weight", weight, scores, k)
    want = reference.popup_weight(weight.cpu(), scores.cpu(), k)
    assert out.dtype == dtype and out.shape == scores.shape
    assert torch.equal(out.cpu(), want)
    assert torch.equal(want, weight.cpu() * reference.popup_mask(scores.cpu().abs(), k))


# Triton has no popup_weight_grad_scores kernel (declared portable, docs/design.md §5.1).
@pytest.mark.parametrize("flavour, shape, dtype", backend_grid(CASES, backends=("reference", "native")))
@pytest.mark.parametrize("special", [False, True])
def test_grad_scores_equals_reference(flavour, shape, dtype, special):
    """grad * weight * sgn(scores), rounded as the composed ops round it: exactly theirs."""
    weight, scores, grad = inputs(shape, dtype, seed=1, special=special, device=flavour.device)
    out = flavour("popup_weight_grad_scores", grad, weight, scores)
    want = reference.popup_weight_grad_scores(grad.cpu(), weight.cpu(), scores.cpu())
    assert out.dtype == dtype and torch.equal(out.cpu(), want)
    assert torch.equal(want, grad.cpu() * weight.cpu() * torch.sgn(scores.cpu()))


@only("native")
@pytest.mark.parametrize("dtype", DTYPES)
def test_native_popup_weight_across_chunks(dtype):
    """Enough scores for several parallel chunks, with ties across them."""
    torch.set_num_threads(2)
    weight, scores, _ = inputs((301, 331), dtype, levels=5)
    k = ops.popup_k(scores.numel(), 0.3)
    assert torch.equal(Flavour("native")("popup_weight", weight, scores, k), reference.popup_weight(weight, scores, k))


@pytest.mark.parametrize("flavour", backend_grid())
def test_straight_through_gradients(flavour):
    """Through the op: the scores get grad * weight * sgn(S) (straight through the mask, then abs),
    the weight grad * mask; the same as the composed ops."""
    weight, scores, g = inputs((9, 37), torch.float32, special=True, device=flavour.device)
    w1, s1 = weight.clone().requires_grad_(), scores.clone().requires_grad_()
    w2, s2 = weight.clone().requires_grad_(), scores.clone().requires_grad_()
    with impresslearn.backend(flavour.backend):
        (ops.popup_weight(w1, s1, 0.25) * g).sum().backward()
        (w2 * ops.popup_mask(s2.abs(), 0.25) * g).sum().backward()
    assert torch.equal(s1.grad, s2.grad) and torch.equal(w1.grad, w2.grad)


@pytest.mark.parametrize("flavour", backend_grid())
def test_gradcheck(flavour):
    """float64: the weight's gradient (the mask does not move under a small change of the weight)
    and the scores' gradient op, linear in grad and weight, twice differentiable."""
    weight, scores, grad = (t.double().requires_grad_() for t in inputs((5, 7), torch.float64, device=flavour.device))
    fast = flavour.backend == "triton"
    with impresslearn.backend(flavour.backend):
        assert torch.autograd.gradcheck(lambda w: ops.popup_weight(w, scores.detach(), 0.4), (weight,), fast_mode=fast)
        fn = lambda g, w: ops._popup_weight_grad_scores(g, w, scores.detach())  # noqa: E731
        assert torch.autograd.gradcheck(fn, (grad, weight), fast_mode=fast)
        assert torch.autograd.gradgradcheck(fn, (grad, weight), fast_mode=True)


@pytest.mark.parametrize("layer", ["linear", "conv"])
@pytest.mark.parametrize("flavour", backend_grid())
def test_layer_step_equals_composed(flavour, layer):
    """A SupermaskLinear / Conv2d step through the fused op gives the composed step's output and
    scores' gradient bit for bit."""
    torch.manual_seed(0)
    net = SupermaskLinear(37, 13, density=0.3) if layer == "linear" else SupermaskConv2d(3, 5, 3, density=0.3)
    net = net.to(flavour.device)
    x = torch.randn((4, 37) if layer == "linear" else (2, 3, 6, 6)).to(flavour.device)
    with impresslearn.backend(flavour.backend):
        out = net(x)
        out.square().sum().backward()
        fused, net.live_scores.grad = net.live_scores.grad, None
        composed = net.weight * ops.popup_mask(net.live_scores.abs(), net.density)
        want = forward_with(net, x, composed)
        want.square().sum().backward()
    assert torch.equal(out, want) and torch.equal(fused, net.live_scores.grad)


def forward_with(net, x, w):
    """The layer's forward with the effective weight `w`."""
    if isinstance(net, SupermaskLinear):
        return F.linear(x, w, net.bias)
    return F.conv2d(x, w, net.bias, net.stride, net.padding, net.dilation, net.groups)


def test_refusals():
    w, s, _ = inputs((4, 5), torch.float32)
    with pytest.raises(TypeError, match="dtype"):
        ops.popup_weight(w.double(), s, 0.5)
    with pytest.raises(ValueError, match="differ"):
        ops.popup_weight(w[:, :4], s, 0.5)
    with pytest.raises(TypeError, match="floating"):
        ops.popup_weight(w, s.int(), 0.5)
    with pytest.raises(ValueError, match="density"):
        ops.popup_weight(w, s, 0.0)
