"""Layers, task selection and convert(), each checked against a dense computation of its own."""

import copy
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from cases import coefficients_oracle, popup_oracle

import impresslearn as il
from impresslearn import layers, pack_masks
from impresslearn.seeding import init_backbone


def test_backbone_init_statistics_and_seed():
    w = init_backbone((400, 500), init="kaiming_normal", seed=1)
    assert abs(w.std().item() - math.sqrt(2 / 500)) < 0.01 * math.sqrt(2 / 500) * 5
    assert torch.equal(w, init_backbone((400, 500), init="kaiming_normal", seed=1))
    assert not torch.equal(w, init_backbone((400, 500), init="kaiming_normal", seed=2))
    s = init_backbone((30, 50), init="signed_constant", seed=1)
    assert set(s.abs().unique().tolist()) == pytest.approx([math.sqrt(2 / 50)])
    scaled = init_backbone((30, 50), init="signed_constant", seed=1, density=0.25)
    torch.testing.assert_close(scaled, s * 2)  # 1/sqrt(0.25)
    with pytest.raises(ValueError):
        init_backbone((3, 3), init="xavier")


@pytest.mark.parametrize("mask", ["topk", "threshold"])
def test_supermask_linear_forward_and_score_gradient(mask):
    layer = layers.SupermaskLinear(37, 13, density=0.2, mask=mask, seed=3)
    x = torch.randn(5, 37)
    s = layer.task_floats(0).detach()
    m = popup_oracle(s.abs(), 13 * 37 - math.floor(0.8 * 13 * 37)) if mask == "topk" else (s >= 0).float()
    out = layer(x)
    torch.testing.assert_close(out, F.linear(x, layer.weight * m))
    g = torch.randn_like(out)
    out.backward(g)
    d_eff = g.t() @ x  # gradient w.r.t. the effective weight W * M
    expected = d_eff * layer.weight * (torch.sign(s) if mask == "topk" else 1)
    torch.testing.assert_close(layer.live_scores.grad, expected)


def test_supermask_conv_and_export_masks():
    layer = layers.SupermaskConv2d(3, 5, 3, padding=1, num_tasks=3, density=0.3, seed=0)
    x = torch.randn(2, 3, 9, 8)
    layer.set_task(2)
    s = layer.task_floats(2).detach()
    m = popup_oracle(s.abs(), il.ops.popup_k(s.numel(), 0.3))
    torch.testing.assert_close(layer(x), F.conv2d(x, layer.weight * m, padding=1))
    packed = layer.export_masks()
    assert packed.num_masks == 3 and packed.shape == layer.weight.shape
    assert torch.equal(packed.unpack()[2].float(), m)
    # load_masks makes every task finished with exactly these masks, computing as they do
    other = layers.SupermaskConv2d(3, 5, 3, padding=1, num_tasks=1, density=0.3, seed=0)
    other.load_masks(packed)
    assert other.num_tasks == 3 and other.export_masks() == packed and all(other.finished)
    other.set_task(2)
    torch.testing.assert_close(other(x), F.conv2d(x, layer.weight * m, padding=1))


def test_tasks_have_their_own_scores():
    layer = layers.SupermaskLinear(10, 4, num_tasks=2)
    first = layer.task_floats(0).detach().clone()
    assert not torch.equal(first, layer.task_floats(1))
    layer.set_task(1)
    layer(torch.randn(3, 10)).sum().backward()
    # one slot Parameter: task 1's scores, with its gradient; task 0's floats are stashed untouched
    assert layer.live_task == 1 and layer.live_scores.grad is not None
    assert torch.equal(layer.task_floats(0), first) and not layer.task_floats(0).requires_grad
    assert layer.add_task() == 2 and layer.num_tasks == 3
    with pytest.raises(IndexError):
        layer.set_task(3)
    with pytest.raises(ValueError, match="density"):
        layers.SupermaskLinear(10, 4, density=0)


@pytest.mark.parametrize("per_channel", [False, True])
def test_impress_linear_matches_dense(per_channel):
    masks = torch.rand(6, 9, 41) < 0.3
    layer = layers.ImpressLinear(41, 9, pack_masks(masks), bias=True, num_tasks=2, per_channel=per_channel)
    shape = (6, 9) if per_channel else (6,)
    assert torch.equal(layer.task_alpha(0).detach(), torch.full(shape, 1 / 6))
    with torch.no_grad():
        layer.task_alpha(1).copy_(torch.randn(shape))
        layer.bias.copy_(torch.randn(9))
    layer.set_task(1)
    x = torch.randn(4, 41)
    w_eff = layer.weight.double() * coefficients_oracle(masks, layer.task_alpha(1).detach())
    torch.testing.assert_close(layer(x), F.linear(x.double(), w_eff, layer.bias.double()).float())
    layer(x).sum().backward()
    assert layer.live_task == 1 and layer.live_alpha.grad.shape == shape
    assert not layer.task_alpha(0).requires_grad


def test_impress_conv_matches_dense():
    masks = torch.rand(4, 6, 3, 3, 3) < 0.5
    layer = layers.ImpressConv2d(3, 6, 3, pack_masks(masks), stride=2, padding=1, per_channel=True)
    with torch.no_grad():
        layer.task_alpha(0).copy_(torch.randn(4, 6))
    x = torch.randn(2, 3, 11, 10)
    w_eff = (layer.weight.double() * coefficients_oracle(masks, layer.task_alpha(0).detach())).float()
    torch.testing.assert_close(layer(x), F.conv2d(x, w_eff, stride=2, padding=1))


def test_mixture_is_linear_in_task_alphas():
    masks = torch.rand(5, 7, 19) < 0.4
    layer = layers.ImpressLinear(19, 7, pack_masks(masks), num_tasks=3)
    for t in range(3):
        layer.load_alpha(t, torch.randn(5))  # finished: a mixture reads finished tasks
    x = torch.randn(3, 19)
    layer.set_task(2)
    single = layer(x)
    layer.set_task(torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(layer(x), single)
    beta = torch.tensor([0.2, 0.5, 0.3], requires_grad=True)
    layer.set_task(beta)
    A = layer.alphas.clone()
    w_eff = layer.weight.double() * coefficients_oracle(masks, (beta.detach() @ A))
    out = layer(x)
    torch.testing.assert_close(out, F.linear(x.double(), w_eff).float())
    out.sum().backward()
    assert beta.grad is not None and beta.grad.shape == (3,)
    with pytest.raises(ValueError, match="mixture"):
        layer.set_task(torch.ones(2))


def test_task_batchnorm_keeps_statistics_per_task():
    bn = layers.TaskBatchNorm2d(3, num_tasks=2)
    bn.train()
    bn.set_task(1)
    bn(torch.randn(4, 3, 5, 5) * 3 + 7)
    assert torch.equal(bn.bns[0].running_mean, torch.zeros(3))
    assert (bn.bns[1].running_mean > 0.3).all()
    assert not bn.bns[0].affine
    bn.eval()
    bn.set_task(torch.tensor([0.5, 0.5]))
    y = bn(torch.randn(4, 3, 5, 5) * 3 + 7)
    assert abs(y.mean().item()) < 1e-5  # batch statistics under a mixture


def _write_effective_weights(plain: nn.Module, converted: nn.Module) -> None:
    """Write W_eff = W * Σ alpha_t M_t of each converted layer into the matching plain layer."""
    plain_mods = dict(plain.named_modules())
    for name, m in converted.named_modules():
        if isinstance(m, (layers.ImpressConv2d, layers.ImpressLinear)):
            masks = m.basis.unpack()  # format tested on its own in test_format
            w_eff = m.weight.double() * coefficients_oracle(masks, m.current_alpha().detach())
            with torch.no_grad():
                plain_mods[name].weight.copy_(w_eff.float())
                if plain_mods[name].bias is not None:
                    plain_mods[name].bias.copy_(m.bias)


@pytest.mark.parametrize("batchnorm", ["keep", "per_task"])
def test_converted_resnet18_equals_effective_weights(batchnorm):
    torch.manual_seed(0)
    original = torchvision.models.resnet18(num_classes=10)
    converted = il.convert(
        copy.deepcopy(original), "impress", basis_size=2, density=0.5, per_channel=True, batchnorm=batchnorm, seed=1
    )
    with torch.no_grad():
        for _, m in layers.task_modules(converted):
            if isinstance(m, layers.ImpressLayer):
                m.task_alpha(0).normal_()
    plain = copy.deepcopy(original)
    _write_effective_weights(plain, converted)
    converted.eval(), plain.eval()
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(converted(x), plain(x), rtol=1e-4, atol=1e-4)
    n_impress = sum(isinstance(m, layers.ImpressLayer) for m in converted.modules())
    assert n_impress == 21  # 20 convolutions and the fc layer
    assert all(type(m) is not nn.Conv2d for m in converted.modules())


def test_convert_keep_and_hybrid():
    model = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
    w0 = model[0].weight.detach().clone()
    il.convert(model, "impress", basis_size=4, init="keep", overrides={"2": "supermask"}, num_tasks=2)
    assert isinstance(model[0], layers.ImpressLinear) and isinstance(model[2], layers.SupermaskLinear)
    assert torch.equal(model[0].weight, w0) and model[0].init == "keep"
    assert model[0].basis_size == 4 and model[2].num_tasks == 2
    # one slot each (task 0's alpha, task 0's scores): every other task holds nothing yet
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["0.live_alpha", "2.live_scores"]
    assert il.add_task(model) == 2
    il.set_task(model, 1)
    assert model[0].task == 1 and model[2].task == 1
    assert model(torch.randn(5, 12)).shape == (5, 3)


def test_convert_rebuilds_backbone_from_seed():
    a = il.convert(nn.Sequential(nn.Linear(6, 4)), "supermask", seed=7, init="signed_constant")
    b = il.convert(nn.Sequential(nn.Linear(6, 4)), "supermask", seed=7, init="signed_constant")
    c = il.convert(nn.Sequential(nn.Linear(6, 4)), "supermask", seed=8, init="signed_constant")
    assert torch.equal(a[0].weight, b[0].weight) and not torch.equal(a[0].weight, c[0].weight)
    assert torch.equal(a[0].bias, torch.zeros(4))


def test_convert_errors():
    with pytest.raises(ValueError, match="mode"):
        il.convert(nn.Sequential(nn.Linear(3, 3)), "dense")
    with pytest.raises(ValueError, match="basis"):
        il.convert(nn.Sequential(nn.Linear(3, 3)), "impress")
    with pytest.raises(KeyError):
        il.convert(nn.Sequential(nn.Linear(3, 3)), "impress", basis={})
    with pytest.raises(ValueError, match="overrides"):
        il.convert(nn.Sequential(nn.Linear(3, 3)), "supermask", overrides={"9": "impress"})
    with pytest.raises(ValueError, match="density"):
        il.convert(nn.Sequential(nn.Linear(3, 3)), "supermask", density=1.2)
    with pytest.raises(ValueError, match="task-aware"):
        il.set_task(nn.Sequential(nn.Linear(3, 3)), 0)
    with pytest.raises(ValueError, match="does not cover"):
        layers.ImpressLinear(3, 4, pack_masks(torch.ones(2, 3, 4)))


def test_compiled_layers_match_eager():
    model = il.convert(
        nn.Sequential(nn.Linear(20, 9), nn.ReLU(), nn.Linear(9, 4)), "impress", basis_size=3, overrides={"2": "supermask"}
    )
    x = torch.randn(6, 20)
    compiled = torch.compile(model)
    torch.testing.assert_close(compiled(x), model(x))
    compiled(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_set_num_tasks_shrinks_scores_and_alphas():
    # shrinking keeps the first tasks as they were, finished or trainable, and drops the rest's state
    sm = layers.SupermaskLinear(7, 5, num_tasks=3, density=0.5)
    sm.set_task(1)
    sm.finish_task(1)
    kept = sm.export_masks([1])
    sm.set_task(2)
    sm.set_num_tasks(2)
    assert sm.num_tasks == 2 and sm.task == 1 and sm.export_masks([1]) == kept
    assert sm.masks.shape[0] == 2 and sm.live_task is None and sm.open_tasks() == [0]  # task 2's floats gone
    im = layers.ImpressLinear(7, 5, layers.random_basis((5, 7), 2, 0.5), num_tasks=3)
    im.set_num_tasks(1)
    assert im.num_tasks == 1 and im.alphas.shape[0] == 1 and len(list(im.parameters())) == 1


def test_a_basis_learnt_over_another_backbone_is_refused():
    net = il.convert(
        nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)), "supermask", density=0.5, num_tasks=2, seed=3, scale=True
    )
    basis = {name: m.export_masks() for name, m in layers.supermask_layers(net)}
    assert basis["0"].origin == (net[0].init, net[0].seed, 0.5) and basis["0"][1].origin == basis["0"].origin
    same = il.convert(
        nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)), "impress", basis=basis, density=0.5, seed=3, scale=True
    )
    assert torch.equal(same[0].weight, net[0].weight)
    for other in (dict(seed=4, scale=True), dict(seed=3, scale=False), dict(seed=3, scale=True, init="signed_constant")):
        model = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
        with pytest.raises(il.ConvertError, match="learnt over another backbone"):
            il.convert(model, "impress", basis=basis, density=0.5, **other)
        assert type(model[0]) is nn.Linear  # nothing changed
    # random masks and masks read from files carry no backbone: accepted as they are
    il.convert(nn.Sequential(nn.Linear(12, 8)), "impress", basis={"0": pack_masks(torch.rand(2, 8, 12) < 0.5)}, seed=9)
