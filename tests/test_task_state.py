"""The task-state model (docs/design.md §4.4): untrained tasks hold nothing, the selected trainable
task lives in one slot Parameter, a finished task is its packed words and computes exactly as it
did, and no optimizer step moves a task that is not selected."""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import impresslearn as il
from impresslearn import layers
from impresslearn.kernel_masks import KernelMaskConfig, KernelMaskConv2d


def supermask(kind, mask="topk", tasks=3):
    torch.manual_seed(0)
    if kind == "linear":
        return layers.SupermaskLinear(23, 11, bias=True, num_tasks=tasks, density=0.3, mask=mask, seed=1), torch.randn(4, 23)
    if kind == "conv":
        layer = layers.SupermaskConv2d(3, 5, 3, padding=1, num_tasks=tasks, density=0.3, mask=mask, seed=1)
        return layer, torch.randn(2, 3, 7, 6)
    layer = layers.SupermaskConv(
        2, 3, 5, 3, stride=2, bias=True, transposed=True, output_padding=1, num_tasks=tasks, density=0.3, mask=mask, seed=1
    )
    return layer, torch.randn(2, 3, 5, 4)


def test_untrained_tasks_hold_nothing():
    one = il.convert(nn.Sequential(nn.Linear(50, 40), nn.ReLU(), nn.Linear(40, 10)), "supermask", num_tasks=1)
    many = il.convert(nn.Sequential(nn.Linear(50, 40), nn.ReLU(), nn.Linear(40, 10)), "supermask", num_tasks=100)
    floats = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert floats(many) == floats(one) == 50 * 40 + 40 * 10  # the selected task's scores only
    assert many[0].masks.shape == (100, 40, 2)  # T/8 bytes per weight (rows padded to 32 bits)
    assert many[0].open_tasks() == [0]


@pytest.mark.parametrize("mask", ["topk", "threshold"])
@pytest.mark.parametrize("kind", ["linear", "conv", "transposed"])
def test_a_finished_task_computes_exactly_as_it_did(kind, mask):
    layer, x = supermask(kind, mask)
    with torch.no_grad():
        layer.task_floats(0).normal_()
    before, packed = layer(x), layer.export_masks([0])
    layer.finish_task(0)
    assert layer.is_finished(0) and layer.live_task is None and layer.live_scores.numel() == 0
    assert layer.export_masks([0]) == packed and torch.equal(layer(x), before)
    # it reads the packed words: change them and the output follows
    with torch.no_grad():
        layer.masks[0].zero_()
    assert torch.equal(layer(x), layer._apply_weight(x, torch.zeros_like(layer.weight)))


def test_one_optimizer_never_moves_a_task_that_is_not_selected():
    layer, x = supermask("linear")
    opt = torch.optim.SGD(layer.parameters(), lr=0.5, momentum=0.9, weight_decay=0.1)
    outputs = {}
    for task in range(3):
        layer.set_task(task)
        for _ in range(3):
            opt.zero_grad(set_to_none=False)
            layer(x).square().sum().backward()
            opt.step()
        if task == 0:
            layer.finish_task(0)  # task 1 stays unfinished: its floats are stashed when task 2 trains
        outputs[task] = layer(x).detach()
    for task in (0, 1):
        layer.set_task(task)
        assert torch.equal(layer(x), outputs[task]), task


def test_switching_tasks_drops_the_slot_gradient_and_keeps_the_floats():
    layer, x = supermask("conv")
    layer(x).sum().backward()
    assert layer.live_scores.grad is not None
    first = layer.live_scores.detach().clone()
    layer.set_task(1)
    assert layer.live_scores.grad is None and layer.live_task == 1
    assert torch.equal(layer.task_floats(0), first) and not isinstance(layer.task_floats(0), nn.Parameter)
    layer.set_task(0)
    assert torch.equal(layer.live_scores, first)


def test_reopen_gives_the_mask_back_and_trains_again():
    for mask in ("topk", "threshold"):
        layer, x = supermask("linear", mask)
        layer.finish_task(0)
        out, packed = layer(x), layer.export_masks([0])
        layer.reopen_task(0)
        assert not layer.is_finished(0) and layer.live_task == 0 and torch.equal(layer(x), out)
        assert (layer.live_scores != 0).all()  # no score at 0, where the top-k gradient vanishes
        layer(x).sum().backward()
        assert layer.live_scores.grad.abs().sum() > 0
        layer.finish_task(0)
        assert layer.export_masks([0]) == packed


def test_a_mixture_reads_finished_masks_only():
    layer, x = supermask("linear")
    with pytest.raises(RuntimeError, match="not finished"):
        layer.set_task(torch.full((3,), 1 / 3))
        layer(x)
    for t in range(3):
        layer.finish_task(t)
    beta = torch.tensor([0.2, 0.5, 0.3], requires_grad=True)
    layer.set_task(beta)
    masks = layer.export_masks().unpack().float()
    want = F.linear(x, layer.weight * torch.einsum("t,trc->rc", beta.detach(), masks), layer.bias)
    out = layer(x)
    torch.testing.assert_close(out, want)
    out.sum().backward()
    assert beta.grad.shape == (3,)


def test_moves_and_copies_carry_every_state():
    layer, x = supermask("linear")
    layer.set_task(1)
    layer.finish_task(2)
    twin = copy.deepcopy(layer).double()
    assert twin.task_floats(0).dtype == torch.float64 and twin.masks.dtype == torch.int32
    for t in range(3):
        layer.set_task(t)
        twin.set_task(t)
        torch.testing.assert_close(twin(x.double()), layer(x).double())


def test_impress_and_kernel_mask_tasks_finish_alike():
    basis = layers.random_basis((6, 9), 3, 0.5, seed=0)
    imp = layers.ImpressLinear(9, 6, basis, num_tasks=2, per_channel=True)
    x = torch.randn(4, 9)
    with torch.no_grad():
        imp.task_alpha(0).normal_()
    before = imp(x)
    imp.finish_task(0)
    assert torch.equal(imp(x), before) and torch.equal(imp.alphas[0], imp.task_alpha(0))
    assert [n for n, _ in imp.named_parameters()] == ["live_alpha"] and imp.live_alpha.numel() == 0
    kernel = KernelMaskConv2d(nn.Conv2d(3, 4, 3), KernelMaskConfig(), num_tasks=2).eval()
    with torch.no_grad():
        kernel.task_floats(0).normal_()
    xi = torch.randn(2, 3, 6, 6)
    before = kernel(xi)
    kernel.finish_task(0)
    torch.testing.assert_close(kernel(xi), before)
    assert kernel.stored[0] and kernel.kmask_bits.shape == (2, 4, 1)


def test_task_parameters_and_finish_over_a_model():
    model = il.convert(
        nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(64, 5)), "supermask", num_tasks=3
    )
    params = il.task_parameters(model, 2)
    assert {id(p) for p in params} == {id(model[0].live_scores), id(model[3].live_scores)}
    il.finish_task(model)
    assert il.task_parameters(model, 2) == [] and model[0].is_finished(2) and not model[0].is_finished(0)
    with pytest.raises(RuntimeError, match="task 2 is finished"):
        model[0].task_floats(2)
