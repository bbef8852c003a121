"""Triton impress_linear (fused GEMM/GEMV for small batches, combine + GEMM above) and its input gradient."""

import itertools

import pytest
import torch
import torch.nn.functional as F

import impresslearn
from cases import DEVICE, TOL, assert_within_torch_error, combine_oracle, make_combine_inputs
from impresslearn import ops, pack_masks, reference

if "triton" not in impresslearn.available_backends():
    pytest.skip(f"triton backend unavailable: {impresslearn.backends.why_unavailable('triton')}", allow_module_level=True)

from impresslearn import kernels  # noqa: E402
from impresslearn.kernels.impress_linear import FUSED_MAX_BATCH  # noqa: E402


def inputs(rows, cols, t, dtype=torch.float32, per_channel=False, seed=0):
    weight, masks, alpha = make_combine_inputs((rows, cols), t, dtype=dtype, per_channel=per_channel, seed=seed)
    return weight.to(DEVICE), masks, pack_masks(masks).words.to(DEVICE), alpha.to(DEVICE)


def exact_linear(x, weight, masks, alpha, bias=None):
    return F.linear(x.cpu().double(), combine_oracle(weight.cpu(), masks, alpha.cpu()),
                    None if bias is None else bias.cpu().double())


# (batch shape, split of the reduction axis): GEMV, split-K / split-N partial sums, several
# row blocks of the fused kernel (fused_max_batch raised), and the combine + GEMM path.
BATCHES = [((1,), None), ((2, 3), 2), ((5,), 3), ((FUSED_MAX_BATCH + 6,), None)]


@pytest.mark.parametrize("batch, split", BATCHES)
@pytest.mark.parametrize("rows, cols, t", [(13, 95, 1), (13, 95, 9), (70, 33, 8), (5, 70, 33)])
def test_impress_linear_matches_oracle(rows, cols, t, batch, split):
    for per_channel, with_bias in [(False, False), (True, True)]:
        weight, masks, words, alpha = inputs(rows, cols, t, per_channel=per_channel, seed=t)
        x = torch.randn(*batch, cols).to(DEVICE)
        bias = torch.randn(rows).to(DEVICE) if with_bias else None
        out = kernels.impress_linear(x, weight, words, alpha, bias, split=split)
        assert out.shape == (*batch, rows) and out.dtype == x.dtype
        torch.testing.assert_close(out.cpu().double(), exact_linear(x, weight, masks, alpha, bias), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("batch, split", BATCHES)
@pytest.mark.parametrize("rows, cols, t", [(13, 95, 9), (70, 33, 8), (5, 70, 33)])
def test_grad_input_matches_oracle(rows, cols, t, batch, split):
    """grad @ W_eff, walking the packed words along the output rows."""
    for per_channel in (False, True):
        weight, masks, words, alpha = inputs(rows, cols, t, per_channel=per_channel, seed=t)
        grad = torch.randn(*batch, rows).to(DEVICE)
        out = kernels.impress_linear_grad_input(grad, weight, words, alpha, split=split)
        assert out.shape == (*batch, cols)
        exact = grad.cpu().double() @ combine_oracle(weight.cpu(), masks, alpha.cpu())
        torch.testing.assert_close(out.cpu().double(), exact, rtol=1e-5, atol=1e-4)


def test_several_row_blocks_of_the_fused_kernel():
    """A batch above one BLOCK_M still uses the fused kernel when the threshold allows it."""
    weight, masks, words, alpha = inputs(13, 40, 9, per_channel=True)
    x = torch.randn(FUSED_MAX_BATCH + 6, 40).to(DEVICE)
    out = kernels.impress_linear(x, weight, words, alpha, None, fused_max_batch=10**6)
    torch.testing.assert_close(out.cpu().double(), exact_linear(x, weight, masks, alpha), rtol=1e-5, atol=1e-4)
    g = torch.randn(FUSED_MAX_BATCH + 6, 13).to(DEVICE)
    gx = kernels.impress_linear_grad_input(g, weight, words, alpha, fused_max_batch=10**6)
    torch.testing.assert_close(gx.cpu().double(), g.cpu().double() @ combine_oracle(weight.cpu(), masks, alpha.cpu()),
                               rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("batch", [(3,), (FUSED_MAX_BATCH + 6,)])
def test_dtypes(dtype, batch):
    """fp16 / bf16: within twice the same-dtype PyTorch error of the exact result; fp64 takes combine + GEMM."""
    for per_channel in (False, True):
        weight, masks, words, alpha = inputs(13, 95, 9, dtype=dtype, per_channel=per_channel)
        x = torch.randn(*batch, 95).to(dtype).to(DEVICE)
        bias = torch.randn(13).to(dtype).to(DEVICE)
        out = kernels.impress_linear(x, weight, words, alpha, bias)
        assert out.dtype == dtype
        assert_within_torch_error(out, reference.impress_linear(x, weight, words, alpha, bias),
                                  exact_linear(x, weight, masks, alpha, bias).to(DEVICE), dtype)
        g = torch.randn(*batch, 13).to(dtype).to(DEVICE)
        assert_within_torch_error(kernels.impress_linear_grad_input(g, weight, words, alpha),
                                  reference.impress_linear_grad_input(g, weight, words, alpha),
                                  g.double() @ combine_oracle(weight.cpu(), masks, alpha.cpu()).to(DEVICE), dtype)


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("batch", [(4,), (2, FUSED_MAX_BATCH)])
def test_forward_backward_through_ops(batch, per_channel):
    """Every gradient (x, weight, alpha, bias) under backend("triton") equals the reference backend's."""
    weight, masks, words, alpha = inputs(13, 95, 9, per_channel=per_channel)
    packed = impresslearn.PackedMasks(words, weight.shape)
    x = torch.randn(*batch, 95).to(DEVICE)
    bias = torch.randn(13).to(DEVICE)
    g = torch.randn(*batch, 13).to(DEVICE)
    results = {}
    for name in ("reference", "triton"):
        leaves = [t.clone().requires_grad_() for t in (x, weight, alpha, bias)]
        with impresslearn.backend(name):
            out = ops.impress_linear(leaves[0], leaves[1], packed, leaves[2], leaves[3])
            (out * g).sum().backward()
        results[name] = [out.detach()] + [t.grad for t in leaves]
    for tri, ref in zip(results["triton"], results["reference"]):
        torch.testing.assert_close(tri, ref, rtol=1e-5, atol=1e-4)


def test_gradcheck_triton():
    weight, masks, words, alpha = inputs(5, 37, 9, dtype=torch.float64, per_channel=True)
    packed = impresslearn.PackedMasks(words, weight.shape)
    x = torch.randn(3, 37, dtype=torch.float64).to(DEVICE)
    bias = torch.randn(5, dtype=torch.float64).to(DEVICE)
    args = tuple(t.clone().requires_grad_() for t in (x, weight, alpha.double(), bias))
    with impresslearn.backend("triton"):
        assert torch.autograd.gradcheck(lambda *a: ops.impress_linear(a[0], a[1], packed, a[2], a[3]), args,
                                        fast_mode=True)


def test_opcheck_triton():
    """Registration (schema, fake tensors, autograd) with the Triton primitives; numerics are tested above."""
    weight, masks, words, alpha = inputs(5, 37, 2)
    x = torch.randn(3, 37).to(DEVICE).requires_grad_()
    g = torch.randn(3, 5).to(DEVICE).requires_grad_()
    with impresslearn.backend("triton"):
        torch.library.opcheck(ops._impress_linear, (x, weight.requires_grad_(), words, alpha.requires_grad_(), None))
        torch.library.opcheck(ops._impress_linear_grad_input, (g, weight, words, alpha))


# --------------------------------------------------------------------------- GPU, realistic shapes

# LeNet-300-100, a CIFAR ResNet-18 classifier, ResNet-50's classifier and a 1x1 conv as a GEMM.
REAL_LINEAR = [(300, 784), (100, 300), (10, 100), (100, 512), (1000, 2048), (2048, 512)]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("rows, cols", REAL_LINEAR)
def test_impress_linear_cuda_realistic(rows, cols):
    for dtype, t, batch, per_channel in itertools.product([torch.float32, torch.float16, torch.bfloat16], [1, 8, 75],
                                                          [1, 16, 128], [False, True]):
        weight, masks, words, alpha = inputs(rows, cols, t, dtype=dtype, per_channel=per_channel)
        x = torch.randn(batch, cols, device=DEVICE).to(dtype)
        exact = exact_linear(x, weight, masks, alpha).to(DEVICE)
        assert_within_torch_error(kernels.impress_linear(x, weight, words, alpha, None),
                                  reference.impress_linear(x, weight, words, alpha, None), exact, dtype)
        g = torch.randn(batch, rows, device=DEVICE).to(dtype)
        exact_g = (g.double() @ combine_oracle(weight.cpu(), masks, alpha.cpu()).to(DEVICE))
        assert_within_torch_error(kernels.impress_linear_grad_input(g, weight, words, alpha),
                                  reference.impress_linear_grad_input(g, weight, words, alpha), exact_g, dtype)
