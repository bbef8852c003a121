"""Kernel-wise masks (impresslearn.kernel_masks, docs/design.md §2.10): one value per (out, in)
kernel broadcast over its spatial positions, the relaxation while training, the stored soft mask
(packed bits + real part) at test time, the frozen backbone, storage counts, convert on a
torchvision network."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from impresslearn.format import PackedMasks
from impresslearn.kernel_masks import KernelMaskConfig, KernelMaskConv2d, KernelMaskLinear, convert_kernelwise, kernel_mask_layers


def conv_layer(cfg=None, groups=1, tasks=2):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 33, 3, padding=1, groups=groups)
    return conv, KernelMaskConv2d(conv, cfg or KernelMaskConfig(), num_tasks=tasks)


@pytest.mark.parametrize("groups", [1, 3])
def test_one_value_per_kernel_broadcast_over_its_positions(groups):
    conv, layer = conv_layer(groups=groups)
    assert layer.mask_shape == (33, 6 // groups)
    with torch.no_grad():
        layer.task_floats(0).copy_(torch.randn(layer.mask_shape))
        layer.task_floats(0)[4, 1] = -3.0  # this kernel is dropped by the binary part
    layer.eval()
    m = layer.mask(0)
    w = layer.effective_weight()
    expect = conv.weight * m[:, :, None, None]
    assert torch.equal(w, expect)
    # every spatial position of kernel (4, 1) carries the same value, its real part alone
    assert torch.allclose(w[4, 1], conv.weight[4, 1] * layer.real_part(layer.task_floats(0)[4, 1]))
    x = torch.randn(2, 6, 8, 8)
    assert torch.allclose(layer(x), F.conv2d(x, expect, conv.bias, 1, 1, 1, groups), atol=1e-6)


def test_relaxation_while_training_hard_mask_at_eval():
    _, layer = conv_layer(KernelMaskConfig(real="logistic", scale=0.1, temperature=0.5))
    with torch.no_grad():
        layer.task_floats(0).copy_(torch.randn(layer.mask_shape))
    r = layer.task_floats(0).detach()
    p = torch.sigmoid(r)
    soft = torch.softmax(torch.stack([p, 1 - p]) / 0.5, dim=0)[0]  # the softmax over [p, 1-p]
    layer.train()
    assert torch.allclose(layer.mask(0), soft + 0.1 * p, atol=1e-6)
    layer.eval()
    assert torch.equal(layer.mask(0), (r > 0).float() + 0.1 * p)
    # no straight-through estimator: the gradient is the relaxation's own, nonzero everywhere
    layer.train()
    layer(torch.randn(2, 6, 5, 5)).sum().backward()
    assert layer.live_logits.grad is not None and (layer.live_logits.grad != 0).all()


@pytest.mark.parametrize("form", ["logistic", "linear"])
def test_stored_task_is_its_bits_plus_real_part_and_drops_r(form):
    _, layer = conv_layer(KernelMaskConfig(real=form, scale=0.1))
    with torch.no_grad():
        layer.task_floats(1).copy_(torch.randn(layer.mask_shape))
    layer.eval()
    hard = layer.mask(1).clone()
    r = layer.task_floats(1).detach().clone()
    layer.store_task(1)
    bits, real = layer.stored_parts(1)
    assert isinstance(bits, PackedMasks) and bits.shape == torch.Size(layer.mask_shape)
    assert torch.equal(bits.unpack()[0], r > 0)
    assert torch.equal(real, 0.1 * (torch.sigmoid(r) if form == "logistic" else r))
    assert layer.is_finished(1) and 1 not in layer.open_tasks()  # only the soft mask is kept
    for mode in (True, False):  # a stored task is the same in training and eval mode
        layer.train(mode)
        assert torch.equal(layer.mask(1), hard)
        assert torch.equal(layer.mask(1), bits.unpack()[0].float() + real)


def test_binary_only_and_straight_through_variants():
    _, layer = conv_layer(KernelMaskConfig(real="none", relax="ste"))
    with torch.no_grad():
        layer.task_floats(0).copy_(torch.randn(layer.mask_shape))
    layer.train()
    m = layer.mask(0)
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    layer(torch.randn(1, 6, 4, 4)).sum().backward()
    assert (layer.live_logits.grad != 0).any()
    layer.store_task(0)
    assert layer.stored_parts(0)[1] is None
    assert layer.bytes_per_task()["real"] == 0


def test_backbone_is_a_frozen_buffer_never_changed():
    conv, layer = conv_layer()
    w0, b0 = conv.weight.detach().clone(), conv.bias.detach().clone()
    names = {n for n, _ in layer.named_parameters()}
    assert names == {"live_logits"}  # one slot: the selected task's R
    opt = torch.optim.Adam(layer.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        layer(torch.randn(2, 6, 5, 5)).pow(2).mean().backward()
        opt.step()
    assert torch.equal(layer.weight, w0) and torch.equal(layer.bias, b0)
    assert layer.weight.data_ptr() != conv.weight.data_ptr()  # a copy: the source model is not shared


def test_storage_counts():
    _, layer = conv_layer()  # 33 x 6 kernels of 3x3
    assert layer.bytes_per_task() == {
        "values": 198,
        "bits_packed": 4 * 33 * 1,
        "bits_exact": 25,
        "real": 4 * 198,
        "total": 132 + 792,
    }
    lin = nn.Linear(70, 5)
    per_weight = KernelMaskLinear(lin, KernelMaskConfig())
    assert per_weight.mask_shape == (5, 70)
    assert per_weight.bytes_per_task() == {
        "values": 350,
        "bits_packed": 4 * 5 * 3,
        "bits_exact": 44,
        "real": 1400,
        "total": 60 + 1400,
    }
    per_row = KernelMaskLinear(lin, KernelMaskConfig(linear="row"))
    assert per_row.mask_shape == (5, 1)
    assert per_row.bytes_per_task()["total"] == 4 * 5 + 4 * 5
    x = torch.randn(3, 70)
    with torch.no_grad():
        per_row.task_floats(0).copy_(torch.tensor([[1.0], [-1.0], [2.0], [-2.0], [0.5]]))
    per_row.eval()
    m = per_row.mask(0)
    assert torch.allclose(per_row(x), F.linear(x, lin.weight * m, lin.bias))


def test_convert_kernelwise_on_torchvision_resnet18():
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=7).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = net(x)
    convert_kernelwise(net, KernelMaskConfig(), num_tasks=2, batchnorm="keep", include=lambda n, m: n != "fc")
    layers = kernel_mask_layers(net)
    assert len(layers) == 20 and all(isinstance(m, KernelMaskConv2d) for _, m in layers)
    assert isinstance(net.fc, nn.Linear) and not isinstance(net.fc, KernelMaskLinear)
    for _, layer in layers:  # task 0 keeps every kernel with no real part: the network itself
        layer.load_soft_mask(0, torch.ones(layer.mask_shape, dtype=torch.bool), torch.zeros(layer.mask_shape))
    net.eval()
    with torch.no_grad():
        assert torch.allclose(net(x), ref, atol=1e-5)
        for _, layer in layers:
            layer.set_task(1)
        assert net(x).shape == (2, 7)
    for _, layer in layers:  # the weights are buffers: only the masks' R train
        assert {n for n, _ in layer.named_parameters()} == {"live_logits"}


def test_convert_kernelwise_swaps_batchnorm_per_task_like_convert():
    from impresslearn.layers import TaskBatchNorm2d

    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    convert_kernelwise(net, num_tasks=3)
    assert isinstance(net[0], KernelMaskConv2d) and isinstance(net[1], TaskBatchNorm2d)
    assert net[1].num_tasks == 3


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"real": "cubic"}, "real must"),
        ({"relax": "gumbel"}, "relax must"),
        ({"linear": "column"}, "linear must"),
        ({"temperature": 0}, "temperature"),
    ],
)
def test_config_refusals(kw, match):
    with pytest.raises(ValueError, match=match):
        KernelMaskConfig(**kw)


def test_load_soft_mask_checks_shapes_and_real_part():
    _, layer = conv_layer()
    with pytest.raises(ValueError, match="shape"):
        layer.load_soft_mask(0, torch.ones(3, 3, dtype=torch.bool), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="real part"):
        layer.load_soft_mask(0, torch.ones(layer.mask_shape, dtype=torch.bool), None)
    with pytest.raises(RuntimeError, match="not stored"):
        layer.stored_parts(1)
