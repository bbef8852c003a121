"""Triton combine and grad-alpha against the reference and the dense oracles (interpreted on CPU without CUDA)."""

import itertools

import pytest
import torch

import impresslearn
from cases import (DEVICE, SHAPES, TOL, assert_within_torch_error, combine_oracle, grad_alpha_oracle,
                   make_combine_inputs)
from impresslearn import ops, pack_masks, reference

if "triton" not in impresslearn.available_backends():
    pytest.skip(f"triton backend unavailable: {impresslearn.backends.why_unavailable('triton')}", allow_module_level=True)

from impresslearn import kernels  # noqa: E402

# Forcing each coefficient path: shift-and-add, and lookup tables (per channel too).
PATHS = {"shift_add": dict(lut_min_masks=10**9), "lut": dict(lut_min_masks=1, lut_per_channel_min_cols=1)}


def inputs(shape, t, dtype=torch.float32, per_channel=False, seed=0):
    weight, masks, alpha = make_combine_inputs(shape, t, dtype=dtype, per_channel=per_channel, seed=seed)
    return weight.to(DEVICE), masks, pack_masks(masks).words.to(DEVICE), alpha.to(DEVICE)


def shape_mask_pairs(shapes, counts, big_counts, big_shapes):
    """Every shape with the small mask counts; the costlier counts (slow in the interpreter) on a few."""
    return [(s, t) for s in shapes for t in counts] + [(s, t) for s in big_shapes for t in big_counts]


@pytest.mark.parametrize("shape, t", shape_mask_pairs([(3, 5), (13, 95), (5, 3, 3, 3), (17,)], [1, 7, 8, 9],
                                                      [33], [(13, 95), (5, 3, 3, 3)]))
def test_combine_matches_oracle(shape, t):
    for per_channel, path in itertools.product([False, True], PATHS.values()):
        weight, masks, words, alpha = inputs(shape, t, per_channel=per_channel, seed=t)
        out = kernels.combine(weight, words, alpha, **path)
        assert out.shape == weight.shape and out.dtype == weight.dtype
        torch.testing.assert_close(out.cpu().double(), combine_oracle(weight.cpu(), masks, alpha.cpu()), **TOL[torch.float32])


@pytest.mark.parametrize("t, per_channel, path", [(70, False, "lut"), (70, True, "lut"), (70, False, "shift_add"),
                                                  (70, True, "shift_add"), (256, False, "lut")])
def test_combine_many_masks(t, per_channel, path):
    """Many groups of 8 masks (the lookup tables' reason to exist), a partial last group for 70."""
    weight, masks, words, alpha = inputs((3, 37), t, per_channel=per_channel, seed=t)
    out = kernels.combine(weight, words, alpha, **PATHS[path])
    torch.testing.assert_close(out.cpu().double(), combine_oracle(weight.cpu(), masks, alpha.cpu()), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_combine_dtypes(dtype):
    """Output in weight's dtype; fp32 accumulation (fp64 for fp64) then one rounding, like the reference."""
    for per_channel, path in itertools.product([False, True], PATHS.values()):
        weight, masks, words, alpha = inputs((13, 95), 9, dtype=dtype, per_channel=per_channel)
        out = kernels.combine(weight, words, alpha, **path)
        ref = reference.combine(weight, words, alpha)
        assert out.dtype == dtype
        torch.testing.assert_close(out, ref, **TOL[dtype])
        assert_within_torch_error(out, ref, combine_oracle(weight.cpu(), masks, alpha.cpu()).to(DEVICE), dtype)


def test_combine_alpha_of_another_dtype():
    """fp64 alpha on an fp32 weight is used in fp32, as the reference does."""
    weight, masks, words, alpha = inputs((7, 33), 9)
    out = kernels.combine(weight, words, alpha.double())
    torch.testing.assert_close(out, reference.combine(weight, words, alpha.double()), **TOL[torch.float32])


@pytest.mark.parametrize("shape, t", shape_mask_pairs([(1, 1), (7, 33), (13, 95), (6, 4, 1, 5)], [1, 7, 8, 9],
                                                      [33, 70], [(13, 95)]))
def test_grad_alpha_matches_oracle(shape, t):
    for per_channel in (False, True):
        weight, masks, words, alpha = inputs(shape, t, per_channel=per_channel, seed=t + 1)
        grad = torch.randn(shape, generator=torch.Generator().manual_seed(t)).to(DEVICE)
        out = kernels.combine_grad_alpha(grad, weight, words, alpha)
        assert out.shape == alpha.shape and out.dtype == alpha.dtype
        torch.testing.assert_close(out.cpu().double(), grad_alpha_oracle(grad.cpu(), weight.cpu(), masks, alpha.cpu()),
                                   rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("per_channel", [False, True])
def test_grad_alpha_dtypes(dtype, per_channel):
    """Low-precision grads and weights are summed in fp32 (fp64 for fp64), alpha keeps its dtype."""
    weight, masks, words, alpha = inputs((13, 95), 9, dtype=dtype, per_channel=per_channel)
    if dtype == torch.float64:
        alpha = alpha.double()
    grad = torch.randn(13, 95).to(dtype).to(DEVICE)
    out = kernels.combine_grad_alpha(grad, weight, words, alpha)
    exact = grad_alpha_oracle(grad.cpu(), weight.cpu(), masks, alpha.cpu())
    assert out.dtype == alpha.dtype
    torch.testing.assert_close(out.cpu().double(), exact, **(TOL[dtype] if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-4)))


def test_grad_alpha_is_deterministic():
    """Partial sums per tile reduced in a fixed order: the same bits on every run (several tiles here)."""
    weight, masks, words, alpha = inputs((9, 1500), 9, per_channel=False)
    grad = torch.randn(9, 1500).to(DEVICE)
    first = kernels.combine_grad_alpha(grad, weight, words, alpha)
    assert torch.equal(first, kernels.combine_grad_alpha(grad, weight, words, alpha))


@pytest.mark.parametrize("per_channel", [False, True])
def test_combine_backward_through_ops(per_channel):
    weight, masks, words, alpha = inputs((13, 95), 33, per_channel=per_channel)
    packed = impresslearn.PackedMasks(words, weight.shape)
    g = torch.randn(13, 95).to(DEVICE)
    results = {}
    for name in ("reference", "triton"):
        w = weight.clone().requires_grad_()
        a = alpha.clone().requires_grad_()
        with impresslearn.backend(name):
            out = ops.combine(w, packed, a)
            (out * g).sum().backward()
        results[name] = (out.detach(), w.grad, a.grad)
    for tri, ref in zip(results["triton"], results["reference"]):
        torch.testing.assert_close(tri, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("per_channel", [False, True])
def test_combine_gradcheck_triton(per_channel):
    weight, masks, words, alpha = inputs((5, 37), 9, dtype=torch.float64, per_channel=per_channel)
    packed = impresslearn.PackedMasks(words, weight.shape)
    with impresslearn.backend("triton"):
        assert torch.autograd.gradcheck(lambda w, a: ops.combine(w, packed, a),
                                        (weight.requires_grad_(), alpha.double().requires_grad_()), fast_mode=True)


def test_opcheck_triton():
    """Registration (schema, fake tensors, autograd) with the Triton primitives; numerics are tested above."""
    weight, masks, words, alpha = inputs((5, 37), 2, dtype=torch.float64, per_channel=True)
    grad = torch.randn(5, 37, dtype=torch.float64).to(DEVICE)
    cw, _, cwords, calpha = inputs((4, 2, 3, 3), 2, dtype=torch.float64)
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64).to(DEVICE)
    with impresslearn.backend("triton"):
        torch.library.opcheck(ops._combine, (weight.requires_grad_(), words, alpha.double().requires_grad_()))
        torch.library.opcheck(ops._combine_grad_alpha, (grad, weight.detach(), words, alpha.double()))
        torch.library.opcheck(ops._impress_conv2d, (x.requires_grad_(), cw.requires_grad_(), cwords,
                                                    calpha.double().requires_grad_(), None, [1, 1], [1, 1], [1, 1], 1))


def test_conv_weights_through_triton():
    """impress_conv2d runs the Triton combine, then the framework's convolution."""
    weight, masks, words, alpha = inputs((6, 4, 3, 3), 9, per_channel=True)
    packed = impresslearn.PackedMasks(words, weight.shape)
    x = torch.randn(2, 4, 9, 7).to(DEVICE)
    with impresslearn.backend("triton"):
        out = ops.impress_conv2d(x, weight, packed, alpha, None, 1, 1)
    with impresslearn.backend("reference"):
        ref = ops.impress_conv2d(x, weight, packed, alpha, None, 1, 1)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- GPU, realistic shapes

# LeNet-300-100, CIFAR ResNet-18 and ResNet-50 layer weights.
CUDA_DTYPES = [torch.float32, torch.float16, torch.bfloat16]
REAL_SHAPES = [(300, 784), (100, 300), (10, 100), (64, 64, 3, 3), (512, 512, 3, 3), (512, 256, 1, 1),
               (64, 3, 7, 7), (2048, 512, 1, 1), (1000, 2048)]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("shape", REAL_SHAPES)
def test_combine_cuda_realistic(shape):
    for dtype, t, per_channel in itertools.product(CUDA_DTYPES, [1, 8, 75], [False, True]):
        weight, masks, words, alpha = inputs(shape, t, dtype=dtype, per_channel=per_channel)
        exact = combine_oracle(weight.cpu(), masks, alpha.cpu()).to(DEVICE)
        assert_within_torch_error(kernels.combine(weight, words, alpha), reference.combine(weight, words, alpha), exact, dtype)
        grad = torch.randn(shape, device=DEVICE).to(dtype)
        exact_g = grad_alpha_oracle(grad.cpu(), weight.cpu(), masks, alpha.cpu()).to(DEVICE)
        assert_within_torch_error(kernels.combine_grad_alpha(grad, weight, words, alpha),
                                  reference.combine_grad_alpha(grad, weight, words, alpha), exact_g, torch.float32)
