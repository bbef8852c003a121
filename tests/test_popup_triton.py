"""Triton popup (radix select, exact k, ties toward the lower flat index) against the sorted oracles."""

import pytest
import torch

import impresslearn
from cases import DEVICE, popup_k_oracle, popup_oracle
from impresslearn import ops, reference
from impresslearn.layers import SupermaskConv2d, SupermaskLinear

if "triton" not in impresslearn.available_backends():
    pytest.skip(f"triton backend unavailable: {impresslearn.backends.why_unavailable('triton')}", allow_module_level=True)

from impresslearn import kernels  # noqa: E402
from impresslearn.kernels.popup import HIST_BLOCK, WRITE_WORDS  # noqa: E402


def scores_of(shape, levels=0, dtype=torch.float32, seed=0):
    """Random scores; with `levels`, only that many distinct values (ties everywhere)."""
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(shape, generator=g) if not levels else torch.randint(0, levels, shape, generator=g).float()
    return s.to(dtype).to(DEVICE)


def check(scores, k, packed=True):
    mask = kernels.popup_mask(scores, k)
    expected = popup_oracle(scores.cpu(), k)
    assert mask.dtype == scores.dtype and mask.shape == scores.shape
    assert int(mask.sum()) == k
    assert torch.equal(mask.cpu(), expected)
    if packed:
        words = kernels.popup_pack(scores, k)
        assert torch.equal(words.cpu(), reference.popup_pack(scores.cpu(), k))


# Several histogram blocks and several counting/writing blocks (ties ranked across blocks).
MULTI_BLOCK = (67, 71)
assert MULTI_BLOCK[0] * MULTI_BLOCK[1] > max(HIST_BLOCK, 32 * WRITE_WORDS)


@pytest.mark.parametrize("levels", [0, 1, 3])
@pytest.mark.parametrize("shape", [(1,), (17,), (7, 33), (5, 3, 3, 3), MULTI_BLOCK])
def test_popup_matches_oracle(shape, levels):
    n = torch.Size(shape).numel()
    scores = scores_of(shape, levels, seed=n + levels)
    for k in sorted({1, popup_k_oracle(n, 0.1), n}):
        check(scores, k, packed=False)
    check(scores, max(1, n // 3))  # the packed words too (the interpreter is slow: one k)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_popup_dtypes(dtype):
    """fp16/bf16 select through fp32 keys (exact), fp64 through 64-bit keys; ties are common in fp16/bf16."""
    for levels in (0, 3):
        scores = scores_of((13, 95), levels, dtype=dtype)
        check(scores, 300)


def test_popup_special_values():
    """-0.0 ties with 0.0, NaN ranks above +inf (torch.sort's order), infinities and negatives in place."""
    scores = torch.tensor([0.0, -0.0, 1.0, float("nan"), -1.0, float("inf"), -0.0, 0.0, float("-inf"), -2.5]).to(DEVICE)
    for k in range(1, scores.numel() + 1):
        assert torch.equal(kernels.popup_mask(scores, k).cpu(), reference.popup_mask(scores.cpu(), k))


def test_popup_of_absolute_scores_with_ties_across_blocks():
    """What the layers pass: |S| with many exact ties, k cutting through a value shared by several blocks."""
    g = torch.Generator().manual_seed(3)
    s = (torch.randint(-4, 5, MULTI_BLOCK, generator=g).float() / 4).to(DEVICE)
    a = s.abs()
    for k in (int((a > 0.5).sum()) + 1, int((a > 0.25).sum()) + 777):
        check(a, k)


def test_popup_through_ops_is_straight_through():
    scores = torch.randn(6, 11, device=DEVICE, requires_grad=True)
    g = torch.randn(6, 11, device=DEVICE)
    with impresslearn.backend("triton"):
        mask = ops.popup_mask(scores.abs(), 0.25)
        (mask * g).sum().backward()
        packed = ops.popup_pack(scores.detach().abs(), 0.25)
    assert torch.equal(mask.detach().cpu(), popup_oracle(scores.detach().abs().cpu(), 17))
    assert torch.equal(scores.grad, torch.sign(scores.detach()) * g)
    assert packed.num_masks == 1 and torch.equal(packed.unpack()[0].float(), mask.detach())


@pytest.mark.parametrize("layer", ["linear", "conv"])
def test_supermask_layers_under_triton(layer):
    """A SupermaskLinear / Conv2d forward and backward are the same under the Triton and reference backends."""
    torch.manual_seed(0)
    net = (SupermaskLinear(37, 13, density=0.3) if layer == "linear" else SupermaskConv2d(3, 5, 3, density=0.3)).to(DEVICE)
    x = torch.randn((4, 37) if layer == "linear" else (2, 3, 6, 6), device=DEVICE)
    results = {}
    for name in ("reference", "triton"):
        net.zero_grad()
        with impresslearn.backend(name):
            out = net(x)
            out.square().sum().backward()
            exported = net.export_masks()
        results[name] = (out.detach(), net.scores[0].grad.clone(), exported.words)
    for tri, ref in zip(results["triton"], results["reference"]):
        torch.testing.assert_close(tri, ref)


def test_opcheck_triton():
    scores = torch.randn(7, 9, device=DEVICE, requires_grad=True)
    with impresslearn.backend("triton"):
        torch.library.opcheck(ops._popup_mask, (scores, 19))
        torch.library.opcheck(ops._popup_pack, (scores.detach(), 19))


# --------------------------------------------------------------------------- GPU, realistic sizes

@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("shape", [(300, 784), (512, 512, 3, 3), (2048, 1170), (5000, 5000)])
def test_popup_cuda_realistic(shape):
    """1 M-25 M scores (ResNet-50 sized), fp32/fp16/bf16, with and without ties, against torch.sort's order."""
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for levels in (0, 7):
            scores = scores_of(shape, levels, dtype=dtype).abs()
            n = scores.numel()
            for density in (0.05, 0.3):
                k = popup_k_oracle(n, density)
                mask = kernels.popup_mask(scores, k)
                assert torch.equal(mask, reference.popup_mask(scores, k))
                assert torch.equal(kernels.popup_pack(scores, k), reference.popup_pack(scores, k))
