import pytest
import torch

import impresslearn as il
from impresslearn import layers, models


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_lenet_300_100():
    m = models.lenet_300_100()
    assert count(m) == 784 * 300 + 300 * 100 + 100 * 10  # no biases
    assert m(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert models.lenet_300_100(num_outputs=100)(torch.randn(2, 784)).shape == (2, 100)


def test_cifar_resnet18():
    m = models.cifar_resnet18(num_classes=100)
    assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1)
    assert not any(isinstance(x, torch.nn.MaxPool2d) for x in m.modules())
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    # 11.2 M weights, as SupSup's and the paper's ResNet-18 (BatchNorm affine params counted here).
    assert 11.1e6 < count(m) < 11.3e6
    narrow = models.cifar_resnet18(num_classes=5, width=8)
    assert narrow(torch.randn(1, 3, 32, 32)).shape == (1, 5)


@pytest.mark.parametrize("mode", ["supermask", "impress"])
def test_converted_cifar_resnet18_trains(mode):
    m = il.convert(models.cifar_resnet18(num_classes=5, width=8), mode, basis_size=2, num_tasks=2)
    bns = [x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d)]
    assert bns and all(not bn.affine for bn in bns)  # per-task, non-affine (inside TaskBatchNorm2d)
    il.set_task(m, 1)
    m(torch.randn(4, 3, 32, 32)).sum().backward()
    trainable = [p for p in m.parameters() if p.grad is not None]
    assert trainable, "no trainable per-task parameter got a gradient"


def test_resnet50_parameter_count_and_convert():
    m = models.resnet50()
    assert count(m) == 25_557_032
    n_conv = sum(isinstance(x, torch.nn.Conv2d) for x in m.modules())
    il.convert(m, "supermask", density=0.1)
    assert sum(isinstance(x, layers.SupermaskConv2d) for x in m.modules()) == n_conv == 53
