"""The dense baselines (impresslearn.dense) compute what the packed ops compute: the SupSup-style
and matrix-vector combines and their alpha gradients, the sort / topk / kthvalue selections, and
the dense twin of the Impress layers that the memory benchmark runs."""

import copy

import pytest
import torch
import torch.nn as nn
from cases import combine_oracle, grad_alpha_oracle, make_combine_inputs, popup_oracle

from impresslearn import convert, dense, layers, pack_masks, set_task
from impresslearn.dense import DenseImpressConv2d, DenseImpressLinear, densify
from impresslearn.models import cifar_resnet18, lenet_300_100


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("shape", [(7, 33), (5, 3, 3, 3)])
def test_dense_combines_match_oracle(shape, per_channel):
    weight, masks, alpha = make_combine_inputs(shape, 9, per_channel=per_channel)
    stacked = dense.stack_masks(pack_masks(masks))
    assert stacked.shape == masks.shape and stacked.dtype == torch.float32
    expected = combine_oracle(weight, masks, alpha).float()
    torch.testing.assert_close(dense.combine_dense(weight, stacked, alpha), expected)
    torch.testing.assert_close(dense.combine_matvec(weight, stacked, alpha), expected)


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("shape", [(7, 33), (5, 3, 3, 3)])
def test_dense_grad_alphas_match_oracle_and_autograd(shape, per_channel):
    weight, masks, alpha = make_combine_inputs(shape, 9, per_channel=per_channel)
    stacked, grad = dense.stack_masks(pack_masks(masks)), torch.randn(shape)
    expected = grad_alpha_oracle(grad, weight, masks, alpha)
    for fn, combine in [
        (dense.combine_dense_grad_alpha, dense.combine_dense),
        (dense.combine_matvec_grad_alpha, dense.combine_matvec),
    ]:
        out = fn(grad, weight, stacked, alpha)
        assert out.shape == alpha.shape and out.dtype == alpha.dtype
        torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
        # what the benchmarks stand in for: autograd through the same dense combine
        a = alpha.clone().requires_grad_()
        (auto,) = torch.autograd.grad(combine(weight, stacked, a), a, grad)
        torch.testing.assert_close(out, auto, rtol=1e-5, atol=1e-5)


def _scores(n, levels, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=g) if not levels else torch.randint(0, levels, (n,), generator=g).float()


@pytest.mark.parametrize("k", [1, 40, 333, 1000])
@pytest.mark.parametrize("levels", [0, 5])
def test_selections_keep_the_top_k(levels, k):
    scores = _scores(1000, levels, seed=k).reshape(40, 25)
    for select in (dense.select_sort, dense.select_topk):
        mask = select(scores, k)
        assert mask.shape == scores.shape and mask.dtype == scores.dtype
        assert int(mask.sum()) == k and set(mask.unique().tolist()) <= {0.0, 1.0}
        # the top k by value; which of the tied scores at the cut is kept is theirs to choose
        kept, dropped = scores[mask == 1], scores[mask == 0]
        assert dropped.numel() == 0 or kept.min() >= dropped.max()
        if not levels:  # distinct scores: one right answer
            assert torch.equal(mask, popup_oracle(scores, k))
    threshold = dense.select_kthvalue(scores, k)
    assert int(threshold.sum()) >= k and torch.equal(threshold * popup_oracle(scores, k), popup_oracle(scores, k))
    if not levels:
        assert torch.equal(threshold, popup_oracle(scores, k))


def _alphas_random(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, layers.ImpressLayer):
                for t in range(m.num_tasks):
                    m.task_alpha(t).uniform_(-1, 1)


@pytest.mark.parametrize("per_channel", [False, True])
def test_densified_model_matches_the_packed_one(per_channel):
    torch.manual_seed(0)
    packed = convert(
        cifar_resnet18(num_classes=7, width=4), "impress", basis_size=3, density=0.3, per_channel=per_channel, num_tasks=2, seed=1
    )
    _alphas_random(packed)
    twin = densify(copy.deepcopy(packed))
    assert not any(n.endswith("basis_words") for n, _ in twin.named_buffers())
    convs = [m for m in twin.modules() if isinstance(m, DenseImpressConv2d)]
    assert len(convs) == 20 and isinstance(twin.fc, DenseImpressLinear)
    assert convs[0].stacked.shape == (3, 4, 3, 3, 3) and convs[0].stacked.dtype == torch.float32
    x = torch.randn(5, 3, 32, 32)
    for task in (0, 1):
        set_task(packed, task)
        set_task(twin, task)
        packed.train(), twin.train()
        out_p, out_d = packed(x), twin(x)
        torch.testing.assert_close(out_d, out_p, rtol=1e-4, atol=1e-4)
        out_p.square().sum().backward()
        out_d.square().sum().backward()
        pairs = zip(layers.impress_layers(packed), [m for m in twin.modules() if hasattr(m, "stacked")])
        for (n, p), d in pairs:  # the packed layer's slot holds the selected task's alpha
            torch.testing.assert_close(d.alpha[task].grad, p.live_alpha.grad, rtol=1e-3, atol=1e-3, msg=n)


def test_densify_with_the_matvec_combine():
    # The benchmarks' second baseline: the same dense stack, combined by one matrix-vector product.
    torch.manual_seed(0)
    packed = convert(lenet_300_100(), "impress", basis_size=4, density=0.3, seed=2)
    _alphas_random(packed)
    twin = densify(copy.deepcopy(packed), combine=dense.combine_matvec)
    assert all(m.combine is dense.combine_matvec for m in twin.modules() if isinstance(m, DenseImpressLinear))
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(twin(x), packed(x), rtol=1e-4, atol=1e-4)


def test_densify_needs_impress_layers():
    with pytest.raises(ValueError, match="no Impress layers"):
        densify(nn.Sequential(nn.Linear(3, 2)))
