"""masked_weight(weight, words): one packed mask over a weight, on every backend (the reference's
and the native kernels, each native variant; Triton composes it from its combine, as declared),
against a float64 oracle on odd shapes and every dtype, non-finite weights included, with its
gradient."""

import pytest
import torch
from cases import DTYPES, EXTRA_SHAPES, QUIET_NAN, SHAPES, Flavour, assert_same_values, backend_grid, case_id, flavours, grid

import impresslearn
from impresslearn import ops, pack_masks, reference


def inputs(shape, dtype, seed=0, device="cpu", non_finite=False):
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(shape, generator=g)
    if non_finite:
        flat = weight.reshape(-1)
        flat[::3] = torch.tensor([float("nan"), float("inf"), -float("inf")]).repeat(len(flat[::3]))[: len(flat[::3])]
    masks = torch.rand((1, *shape), generator=g) < 0.4
    return weight.to(dtype).to(device), masks, pack_masks(masks).words.to(device)


@pytest.mark.parametrize(
    "flavour, shape, dtype",
    grid(
        flavours(native_variants=True),
        [(s, d) for s in SHAPES + EXTRA_SHAPES for d in DTYPES],
        [((7, 33), torch.float32), ((5, 3, 3, 3), torch.float16)],
        ids=lambda s, d: f"{case_id(s)}-{case_id(d)}",
    ),
)
@pytest.mark.parametrize("non_finite", [False, True])
@QUIET_NAN
def test_masked_weight_equals_the_product_with_the_mask(flavour: Flavour, shape, dtype, non_finite):
    # exact: one product per weight, so every backend gives the oracle's bits (an unset bit gives
    # weight * 0, NaN for a non-finite weight, as combine with alpha 1 does)
    weight, masks, words = inputs(shape, dtype, device=flavour.device, non_finite=non_finite)
    out = flavour("masked_weight", weight, words)
    assert_same_values(out, weight.double().cpu() * masks[0].double())
    with impresslearn.backend(flavour.backend):
        ones = torch.ones(1, dtype=dtype, device=flavour.device)
        assert_same_values(ops.combine(weight, impresslearn.PackedMasks(words, weight.shape), ones), out.cpu())


@pytest.mark.parametrize("flavour", backend_grid())
def test_gradient_is_the_mask(flavour):
    weight, masks, words = inputs((5, 37), torch.float64, device=flavour.device)
    weight.requires_grad_()
    with impresslearn.backend(flavour.backend):
        out = ops.masked_weight(weight, impresslearn.PackedMasks(words, weight.shape))
        grad = torch.randn_like(out)
        out.backward(grad)
        assert torch.equal(weight.grad.cpu(), grad.cpu() * masks[0].double())
        if flavour.backend == "reference":
            assert torch.autograd.gradcheck(
                lambda w: ops.masked_weight(w, impresslearn.PackedMasks(words, w.shape)), (weight.detach().requires_grad_(),)
            )


def test_refusals():
    weight, _, words = inputs((5, 37), torch.float32)
    two = impresslearn.PackedMasks(torch.cat([words, words]), weight.shape)
    with pytest.raises(ValueError, match="words of one mask, got 2"):
        ops.masked_weight(weight, two)
    with pytest.raises(ValueError, match="do not cover"):
        ops.masked_weight(weight[:, :30], impresslearn.PackedMasks(words, weight.shape))
    assert reference.KERNELS["masked_weight"] is reference.masked_weight


def test_a_finished_supsup_task_reads_its_mask_through_masked_weight(monkeypatch):
    layer = impresslearn.SupermaskLinear(37, 5, num_tasks=1)
    layer.finish_task(0)
    calls = []
    real = ops.masked_weight
    monkeypatch.setattr(ops, "masked_weight", lambda *a: calls.append(1) or real(*a))
    want = layer.weight * layer.mask(0)
    assert torch.equal(layer.effective_weight(), want) and calls == [1]
